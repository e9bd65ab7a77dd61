#include "services/worker/worker_service_impl.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/refused_reactors.h"
#include "services/common/request_rules.h"
#include "services/common/status_util.h"

namespace longctx {
namespace {

using worker::v1::GenerateResponse;

v1::FinishReason ToWire(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStopToken:
      return v1::FINISH_REASON_STOP_TOKEN;
    case FinishReason::kNotFinished:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// GenerateReactor streams one request's engine events to the gateway. Events
// arrive on the engine's thread and queue in a state shared with the sink,
// which outlives the reactor; one write is in flight at a time, merging queued
// events into it.
class GenerateReactor : public grpc::ServerWriteReactor<GenerateResponse> {
 public:
  // A request that `refusal` (when not OK) refuses is finished with it;
  // otherwise `request` passed CheckWorkerRequest.
  GenerateReactor(Engine* engine, const worker::v1::GenerateRequest& request,
                  absl::Time deadline, const absl::Status& refusal)
      : engine_(engine), state_(std::make_shared<State>()) {
    state_->reactor = this;
    GenerateParams params;
    params.prompt.assign(request.prompt_token_ids().begin(),
                         request.prompt_token_ids().end());
    params.temperature = request.sampling().temperature();
    params.top_k = request.sampling().top_k();
    params.top_p = request.sampling().top_p();
    params.seed = request.sampling().seed();
    params.max_new_tokens = request.max_new_tokens();
    params.stop_token_ids.assign(request.stop_token_ids().begin(),
                                 request.stop_token_ids().end());
    params.logprobs = request.logprobs().enabled();
    params.top_logprobs = request.logprobs().top_logprobs();
    params.deadline = deadline;
    const v1::CachePolicy policy = request.cache_policy();
    params.cache_read = policy == v1::CACHE_POLICY_UNSPECIFIED ||
                        policy == v1::CACHE_POLICY_READ_WRITE ||
                        policy == v1::CACHE_POLICY_READ_ONLY;
    params.cache_write = policy == v1::CACHE_POLICY_UNSPECIFIED ||
                         policy == v1::CACHE_POLICY_READ_WRITE ||
                         policy == v1::CACHE_POLICY_WRITE_ONLY;
    params.cache_namespace = request.cache_namespace();
    if (!refusal.ok()) {
      absl::MutexLock lock(&state_->mu);
      FinishLocked(ToGrpcStatus(refusal));
      return;
    }
    std::shared_ptr<State> state = state_;
    absl::StatusOr<int64_t> id =
        engine_->Submit(std::move(params), [state](TokenEvent event) {
          absl::MutexLock lock(&state->mu);
          if (state->reactor == nullptr) return;
          state->pending.push_back(std::move(event));
          if (state->writing) return;
          // The reactor's state is `state`: tell the analysis it is held.
          state->reactor->state_->mu.AssertHeld();
          state->reactor->WriteNextLocked();
        });
    absl::MutexLock lock(&state_->mu);
    if (!id.ok()) {
      FinishLocked(ToGrpcStatus(id.status()));
      return;
    }
    state_->id = *id;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    state_->writing = false;
    if (!ok) {  // The gateway went away.
      if (state_->id > 0) engine_->Cancel(state_->id);
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    if (!state_->pending.empty()) WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    if (state_->id > 0) engine_->Cancel(state_->id);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
    }
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    GenerateReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    std::deque<TokenEvent> pending ABSL_GUARDED_BY(mu);
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    int64_t id ABSL_GUARDED_BY(mu) = 0;
  };

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (state_->finished) return;
    state_->finished = true;
    Finish(status);
  }

  // Sends every queued event in one message; the last event ends the stream.
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (state_->finished || state_->pending.empty()) return;
    response_.Clear();
    bool last = false;
    grpc::Status final_status;
    while (!state_->pending.empty() && !last) {
      TokenEvent& event = state_->pending.front();
      if (!event.status.ok()) {
        final_status = ToGrpcStatus(event.status);
        last = true;
        state_->pending.pop_front();
        break;
      }
      for (int32_t token : event.tokens) response_.add_token_ids(token);
      for (const TokenLogprob& logprob : event.logprobs) {
        v1::TokenLogprob* out = response_.add_logprobs();
        out->set_token_id(logprob.token);
        out->set_logprob(logprob.logprob);
        for (const kernels::TokenLogprob& alternative : logprob.top) {
          v1::TopLogprob* top = out->add_top();
          top->set_token_id(alternative.token);
          top->set_logprob(alternative.logprob);
        }
      }
      response_.set_cached_tokens(event.cached_tokens);
      response_.set_prefill_seconds(event.prefill_seconds);
      if (event.finished) {
        last = true;
        response_.set_finished(true);
        response_.set_finish_reason(ToWire(event.finish_reason));
        response_.set_decode_seconds(event.decode_seconds);
      }
      state_->pending.pop_front();
    }
    if (last && !final_status.ok()) {
      FinishLocked(final_status);
      return;
    }
    if (last) {
      state_->finished = true;
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    state_->writing = true;
    StartWrite(&response_);
  }

  Engine* const engine_;
  std::shared_ptr<State> state_;
  GenerateResponse response_;
};

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(const WorkerIdentity& identity,
                                     InternalAuth auth,
                                     absl::Duration step_stall)
    : identity_(identity), auth_(std::move(auth)), step_stall_(step_stall) {}

void WorkerServiceImpl::Attach(std::string fingerprint_hex, int vocab_size,
                               Engine* engine, const KvBlockPool* pool,
                               std::function<DeviceReport()> device) {
  auto loaded = std::make_unique<Loaded>();
  loaded->fingerprint_hex = std::move(fingerprint_hex);
  loaded->vocab_size = vocab_size;
  loaded->engine = engine;
  loaded->pool = pool;
  loaded->device = std::move(device);
  loaded_storage_ = std::move(loaded);
  loaded_.store(loaded_storage_.get(), std::memory_order_release);
}

grpc::ServerWriteReactor<GenerateResponse>* WorkerServiceImpl::Generate(
    grpc::CallbackServerContext* context,
    const worker::v1::GenerateRequest* request) {
  // The gateway passes its client's deadline on; none is infinite.
  const absl::Time deadline =
      context->deadline() == std::chrono::system_clock::time_point::max()
          ? absl::InfiniteFuture()
          : absl::FromChrono(context->deadline());
  grpc::Status auth = auth_.Check(*context, "worker");
  if (!auth.ok()) return new RefusedWriteReactor<GenerateResponse>(auth);
  const Loaded* loaded = loaded_.load(std::memory_order_acquire);
  absl::Status refusal;
  if (loaded == nullptr) {
    refusal = absl::UnavailableError(
        "the worker is still loading its model: retry shortly");
  } else if (loaded->engine == nullptr) {
    refusal = absl::FailedPreconditionError(
        "this rank does not take requests: send them to rank 0 of its group");
  } else {
    // The KV cache bounds the prompt and the new tokens (together checked by
    // the engine against its blocks).
    WorkerRequestLimits limits;
    limits.vocab_size = loaded->vocab_size;
    const int64_t cache_tokens =
        static_cast<int64_t>(loaded->pool->capacity()) *
        loaded->pool->layout().block_size;
    limits.max_prompt_tokens = static_cast<int>(
        std::min<int64_t>(cache_tokens, std::numeric_limits<int32_t>::max()));
    limits.max_new_tokens = limits.max_prompt_tokens;
    refusal = CheckWorkerRequest(*request, limits);
  }
  return new GenerateReactor(loaded == nullptr ? nullptr : loaded->engine,
                             *request, deadline, refusal);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetStatus(
    grpc::CallbackServerContext* context,
    const worker::v1::GetStatusRequest* /*request*/,
    worker::v1::WorkerStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status auth = auth_.Check(*context, "worker");
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  response->set_group_id(identity_.group_id);
  response->set_rank(identity_.rank);
  response->set_group_size(identity_.group_size);
  const Loaded* loaded = loaded_.load(std::memory_order_acquire);
  response->set_ready(loaded != nullptr && ready_.load());
  if (loaded != nullptr) {
    response->set_model_fingerprint(loaded->fingerprint_hex);
    response->set_block_size(loaded->pool->layout().block_size);
    if (loaded->engine != nullptr) {
      const absl::Duration step = loaded->engine->StepAge();
      if (step > step_stall_) {
        response->set_ready(false);
        response->set_not_ready_reason(absl::StrCat(
            "its engine step has run for ", absl::FormatDuration(step),
            " (over --step_stall_seconds=", absl::ToInt64Seconds(step_stall_),
            ")"));
      }
      response->set_running_sequences(loaded->engine->running());
      response->set_waiting_sequences(loaded->engine->waiting());
    }
    response->set_kv_blocks_used(loaded->pool->used_blocks());
    response->set_kv_blocks_capacity(loaded->pool->capacity());
    if (loaded->device) {
      const DeviceReport device = loaded->device();
      response->set_device(device.device);
      response->set_device_memory_used_bytes(device.memory_used_bytes);
      response->set_device_memory_total_bytes(device.memory_total_bytes);
      response->set_kv_cache_bytes(device.kv_cache_bytes);
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace longctx
