#include "services/gateway/generate_call.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/gateway/stop_matcher.h"

namespace longctx {
namespace {

class GenerateCall;

// WorkerCall is one attempt at the request on a group's leader: the client
// side of the relay. It reads one message at a time, each started by the
// GenerateCall once the client took the previous one, and holds a hold
// (AddHold) for as long as another read may be started: without it the call
// could finish and free itself between a read and the next StartRead. It
// deletes itself after telling the GenerateCall it is done.
class WorkerCall
    : public grpc::ClientReadReactor<worker::v1::GenerateResponse> {
 public:
  WorkerCall(GenerateCall* owner, int attempt)
      : owner_(owner), attempt_(attempt) {}

  void Start(worker::v1::Worker::Stub* leader,
             const worker::v1::GenerateRequest* request,
             std::chrono::system_clock::time_point deadline) {
    if (deadline != std::chrono::system_clock::time_point::max()) {
      context_.set_deadline(deadline);
    }
    leader->async()->Generate(&context_, request, this);
    AddHold();
    StartRead(&message_);
    StartCall();
  }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  void ReadNext() { StartRead(&message_); }
  void Cancel() { context_.TryCancel(); }
  // Removes the hold taken by Start; called once, by the GenerateCall, where
  // no further read will be started. The call can then end: its OnDone
  // follows, possibly at once on another thread.
  void StopReading() { RemoveHold(); }
  const worker::v1::GenerateResponse& message() const { return message_; }

 private:
  GenerateCall* const owner_;
  const int attempt_;
  grpc::ClientContext context_;
  worker::v1::GenerateResponse message_;
};

// GenerateCall is the server side of the relay: it writes to the client. One
// message is in flight at a time in each direction: the next worker read
// starts only after the client write of the previous message completed, which
// carries the client's flow control to the worker. A worker call that fails
// (UNAVAILABLE, ABORTED, INTERNAL, UNKNOWN: the group broke or went away)
// before any token reached the client is retried once on another group.
class GenerateCall : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateCall(grpc::CallbackServerContext* server_context,
               worker::v1::Worker::Stub* leader, ValidatedRequest request,
               std::string request_id, absl::Time arrived,
               std::unique_ptr<TextStream> text, GenerateCallHooks hooks,
               StreamWatchdog* watchdog, std::function<void()> on_stalled)
      : request_(std::move(request)),
        request_id_(std::move(request_id)),
        arrived_(arrived),
        deadline_(server_context->deadline()),
        text_(std::move(text)),
        stops_(request_.stop_sequences),
        hooks_(std::move(hooks)) {
    usage_.set_prompt_tokens(request_.worker_request.prompt_token_ids_size());
    auto* first = new WorkerCall(this, 1);
    {
      absl::MutexLock lock(&mu_);
      worker_ = first;
      if (watchdog != nullptr) {
        cancel_target_ = std::make_shared<CancelTarget>();
        {
          absl::MutexLock target_lock(&cancel_target_->mu);
          cancel_target_->context = server_context;
        }
        watch_ = watchdog->Register(
            [target = cancel_target_, on_stalled = std::move(on_stalled)] {
              absl::MutexLock lock(&target->mu);
              if (target->context == nullptr) return;  // The stream is over.
              if (on_stalled) on_stalled();
              target->context->TryCancel();
            });
      }
    }
    first->Start(leader, &request_.worker_request, deadline_);
  }

  // Worker side. The WorkerCall lives until it has called OnWorkerDone, and
  // it cannot end before its hold is removed.
  void OnWorkerRead(WorkerCall* worker, bool ok) {
    WorkerCall* stop = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (ok && !server_finished_) {
        RelayLocked(worker->message());
        return;
      }
      stop = TakeHoldLocked();
    }
    if (stop != nullptr) stop->StopReading();  // OnDone(status) follows.
  }

  void OnWorkerDone(int attempt, const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (MaybeRetryLocked(attempt, status)) return;
      worker_ = nullptr;
      worker_done_ = true;
      // A stop sequence cancelled the worker on purpose: that is success.
      worker_status_ = finish_reason_ == v1::FINISH_REASON_STOP_SEQUENCE
                           ? grpc::Status::OK
                           : status;
      MaybeFinishLocked();
    }
    Release();
  }

  // Client side.
  void OnWriteDone(bool ok) override {
    WorkerCall* stop = nullptr;
    {
      absl::MutexLock lock(&mu_);
      client_write_pending_ = false;
      if (watch_ != nullptr) watch_->WriteDone();
      if (final_sent_) return;
      if (!ok) {  // The client went away.
        if (worker_ != nullptr) worker_->Cancel();
        client_gone_ = true;
        MaybeFinishLocked();
      } else if (!stops_.stopped() && !worker_done_ && worker_ != nullptr &&
                 !hold_removed_) {
        // Still within the hold: the worker call cannot have finished.
        worker_->ReadNext();
        return;
      } else {
        MaybeFinishLocked();
      }
      stop = TakeHoldLocked();
    }
    if (stop != nullptr) stop->StopReading();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    client_gone_ = true;
    if (worker_ != nullptr) worker_->Cancel();
  }

  void OnDone() override {
    if (cancel_target_ != nullptr) {
      absl::MutexLock lock(&cancel_target_->mu);
      cancel_target_->context = nullptr;  // No longer valid.
    }
    {
      absl::MutexLock lock(&mu_);
      watch_.reset();
    }
    Release();
  }

 private:
  // Relays `message`, just read from the worker, to the client.
  void RelayLocked(const worker::v1::GenerateResponse& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    timings_.set_prefill_seconds(message.prefill_seconds());
    usage_.set_cached_tokens(
        std::max(usage_.cached_tokens(), message.cached_tokens()));
    to_client_.Clear();
    to_client_.set_request_id(request_id_);
    std::string text;
    for (int i = 0; i < message.token_ids_size() && !stops_.stopped(); ++i) {
      const int32_t id = message.token_ids(i);
      to_client_.add_token_ids(id);
      usage_.set_generated_tokens(usage_.generated_tokens() + 1);
      if (i < message.logprobs_size()) {
        v1::TokenLogprob* logprob = to_client_.add_logprobs();
        *logprob = message.logprobs(i);
        logprob->set_text(text_->TokenText(id));
        for (v1::TopLogprob& top : *logprob->mutable_top()) {
          top.set_text(text_->TokenText(top.token_id()));
        }
      }
      text += stops_.Push(text_->Push(absl::MakeConstSpan(&id, 1)));
    }
    if (first_token_at_ == absl::InfinitePast() &&
        to_client_.token_ids_size() > 0) {
      first_token_at_ = absl::Now();
    }
    if (stops_.stopped()) {
      // The stop sequence ends the request: no more tokens from the worker.
      finish_reason_ = v1::FINISH_REASON_STOP_SEQUENCE;
      worker_->Cancel();
    } else if (message.finished()) {
      finish_reason_ = message.finish_reason();
      timings_.set_decode_seconds(message.decode_seconds());
      text += stops_.Push(text_->Flush());
      text += stops_.Flush();
    }
    to_client_.set_text(text);
    relayed_ = true;
    client_write_pending_ = true;
    if (watch_ != nullptr) watch_->WriteStarted();
    StartWrite(&to_client_);
  }

  // The live attempt, when its hold is still to be removed (by the caller,
  // without the lock); null otherwise. Only one caller ever gets it.
  WorkerCall* TakeHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (worker_ == nullptr || hold_removed_) return nullptr;
    hold_removed_ = true;
    return worker_;
  }

  // Starts a second attempt on another group when the first failed as a
  // broken or vanished group does, before the client got anything, and the
  // client is still there. Returns whether it did.
  bool MaybeRetryLocked(int attempt, const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const grpc::StatusCode code = status.error_code();
    const bool broken = code == grpc::StatusCode::UNAVAILABLE ||
                        code == grpc::StatusCode::ABORTED ||
                        code == grpc::StatusCode::INTERNAL ||
                        code == grpc::StatusCode::UNKNOWN;
    if (!broken || attempt != 1 || relayed_ || client_gone_ ||
        server_finished_ || !hooks_.retry_elsewhere) {
      return false;
    }
    worker::v1::Worker::Stub* leader = hooks_.retry_elsewhere(status);
    if (leader == nullptr) return false;
    WorkerCall* second = new WorkerCall(this, 2);
    worker_ = second;
    hold_removed_ = false;
    // The first attempt's reference passes to the second.
    second->Start(leader, &request_.worker_request, deadline_);
    return true;
  }

  // Each side's OnDone releases one reference; the last one deletes the call,
  // with no lock held (the other side may still be unlocking the mutex).
  void Release() {
    if (references_.fetch_sub(1) == 1) delete this;
  }

  // Finishes the client stream once the worker call ended and no write is
  // pending: a final message with usage and timings on success, the worker's
  // status otherwise.
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (server_finished_ || !worker_done_ || client_write_pending_) return;
    server_finished_ = true;
    grpc::Status status =
        client_gone_ ? grpc::Status::CANCELLED : worker_status_;
    const absl::Time now = absl::Now();
    timings_.set_queue_seconds(0);
    timings_.set_total_seconds(absl::ToDoubleSeconds(now - arrived_));
    if (first_token_at_ != absl::InfinitePast()) {
      timings_.set_time_to_first_token_seconds(
          absl::ToDoubleSeconds(first_token_at_ - arrived_));
    }
    if (hooks_.on_done) hooks_.on_done(status, usage_, timings_);
    if (!status.ok()) {
      Finish(status);
      return;
    }
    final_sent_ = true;
    last_.Clear();
    last_.set_request_id(request_id_);
    last_.set_finish_reason(finish_reason_);
    *last_.mutable_usage() = usage_;
    *last_.mutable_timings() = timings_;
    if (watch_ != nullptr) watch_->WriteStarted();
    StartWriteAndFinish(&last_, grpc::WriteOptions(), grpc::Status::OK);
  }

  ValidatedRequest request_;
  const std::string request_id_;
  const absl::Time arrived_;
  const std::chrono::system_clock::time_point deadline_;
  std::unique_ptr<TextStream> text_;
  StopMatcher stops_;
  GenerateCallHooks hooks_;

  v1::GenerateResponse to_client_;
  v1::GenerateResponse last_;

  // What the watchdog cancels, valid until the server side's OnDone.
  struct CancelTarget {
    absl::Mutex mu;
    grpc::CallbackServerContext* context ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<CancelTarget> cancel_target_;

  // The server side and the worker attempts (one at a time) each hold one.
  std::atomic<int> references_{2};
  // The two sides' reactions run on gRPC's threads, one of each side at a
  // time but the sides concurrently: what both touch is under mu_.
  absl::Mutex mu_;
  WorkerCall* worker_ ABSL_GUARDED_BY(mu_) = nullptr;  // The live attempt.
  bool hold_removed_ ABSL_GUARDED_BY(mu_) = false;     // Its hold.
  v1::Usage usage_ ABSL_GUARDED_BY(mu_);
  v1::Timings timings_ ABSL_GUARDED_BY(mu_);
  v1::FinishReason finish_reason_ ABSL_GUARDED_BY(mu_) =
      v1::FINISH_REASON_UNSPECIFIED;
  absl::Time first_token_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  grpc::Status worker_status_ ABSL_GUARDED_BY(mu_);
  bool relayed_ ABSL_GUARDED_BY(mu_) = false;  // A message went to the client.
  bool worker_done_ ABSL_GUARDED_BY(mu_) = false;
  bool server_finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  bool final_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<StreamWatchdog::Watch> watch_ ABSL_GUARDED_BY(mu_);
};

void WorkerCall::OnReadDone(bool ok) { owner_->OnWorkerRead(this, ok); }

void WorkerCall::OnDone(const grpc::Status& status) {
  // The owner forgets this attempt (under its lock) before it is deleted; the
  // owner may be deleted by this call, and is not touched after it.
  owner_->OnWorkerDone(attempt_, status);
  delete this;
}

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* StartGenerateCall(
    grpc::CallbackServerContext* context, worker::v1::Worker::Stub* leader,
    ValidatedRequest request, std::string request_id, absl::Time arrived,
    std::unique_ptr<TextStream> text, GenerateCallHooks hooks,
    StreamWatchdog* watchdog, std::function<void()> on_stalled) {
  return new GenerateCall(context, leader, std::move(request),
                          std::move(request_id), arrived, std::move(text),
                          std::move(hooks), watchdog, std::move(on_stalled));
}

}  // namespace longctx
