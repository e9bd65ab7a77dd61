#include "services/gateway/generate_call.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/gateway/stop_matcher.h"

namespace longctx {
namespace {

// The relay is two reactors sharing one object: the server side writes to the
// client, the client side reads from the worker. One message is in flight at a
// time in each direction: the next worker read starts only after the client
// write of the previous message completed, which carries the client's flow
// control to the worker.
//
// The worker reads are started from the client side's OnWriteDone, outside the
// worker call's own reactions, so the worker call holds a hold (AddHold) for as
// long as another read may be started: without it the worker call can finish
// and free itself between a read and the next StartRead.
class GenerateCall
    : public grpc::ServerWriteReactor<v1::GenerateResponse>,
      public grpc::ClientReadReactor<worker::v1::GenerateResponse> {
 public:
  GenerateCall(grpc::CallbackServerContext* server_context,
               worker::v1::Worker::Stub* leader, ValidatedRequest request,
               std::string request_id, absl::Time arrived,
               std::unique_ptr<TextStream> text, GenerateCallHooks hooks,
               StreamWatchdog* watchdog, std::function<void()> on_stalled)
      : request_(std::move(request)),
        request_id_(std::move(request_id)),
        arrived_(arrived),
        text_(std::move(text)),
        stops_(request_.stop_sequences),
        hooks_(std::move(hooks)) {
    usage_.set_prompt_tokens(request_.worker_request.prompt_token_ids_size());
    if (watchdog != nullptr) {
      cancel_target_ = std::make_shared<CancelTarget>();
      {
        absl::MutexLock lock(&cancel_target_->mu);
        cancel_target_->context = server_context;
      }
      absl::MutexLock lock(&mu_);
      watch_ = watchdog->Register(
          [target = cancel_target_, on_stalled = std::move(on_stalled)] {
            absl::MutexLock lock(&target->mu);
            if (target->context == nullptr) return;  // The stream is over.
            if (on_stalled) on_stalled();
            target->context->TryCancel();
          });
    }
    if (server_context->deadline() !=
        std::chrono::system_clock::time_point::max()) {
      worker_context_.set_deadline(server_context->deadline());
    }
    leader->async()->Generate(
        &worker_context_, &request_.worker_request,
        static_cast<grpc::ClientReadReactor<worker::v1::GenerateResponse>*>(
            this));
    grpc::ClientReadReactor<worker::v1::GenerateResponse>::AddHold();
    grpc::ClientReadReactor<worker::v1::GenerateResponse>::StartRead(
        &from_worker_);
    grpc::ClientReadReactor<worker::v1::GenerateResponse>::StartCall();
  }

  // Worker side.
  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (ok && !server_finished_) {
        RelayLocked();
        return;
      }
    }
    StopReading();  // OnDone(status) follows.
  }

  // Relays the message just read from the worker to the client.
  void RelayLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    timings_.set_prefill_seconds(from_worker_.prefill_seconds());
    usage_.set_cached_tokens(
        std::max(usage_.cached_tokens(), from_worker_.cached_tokens()));
    to_client_.Clear();
    to_client_.set_request_id(request_id_);
    std::string text;
    for (int i = 0; i < from_worker_.token_ids_size() && !stops_.stopped();
         ++i) {
      const int32_t id = from_worker_.token_ids(i);
      to_client_.add_token_ids(id);
      usage_.set_generated_tokens(usage_.generated_tokens() + 1);
      if (i < from_worker_.logprobs_size()) {
        v1::TokenLogprob* logprob = to_client_.add_logprobs();
        *logprob = from_worker_.logprobs(i);
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
      worker_context_.TryCancel();
    } else if (from_worker_.finished()) {
      finish_reason_ = from_worker_.finish_reason();
      timings_.set_decode_seconds(from_worker_.decode_seconds());
      text += stops_.Push(text_->Flush());
      text += stops_.Flush();
    }
    to_client_.set_text(text);
    client_write_pending_ = true;
    if (watch_ != nullptr) watch_->WriteStarted();
    grpc::ServerWriteReactor<v1::GenerateResponse>::StartWrite(&to_client_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
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
    {
      absl::MutexLock lock(&mu_);
      client_write_pending_ = false;
      if (watch_ != nullptr) watch_->WriteDone();
      if (final_sent_) return;
      if (!ok) {  // The client went away.
        worker_context_.TryCancel();
        client_gone_ = true;
        MaybeFinishLocked();
      } else if (!stops_.stopped() && !worker_done_) {
        // Still within the hold: the worker call cannot have finished.
        grpc::ClientReadReactor<worker::v1::GenerateResponse>::StartRead(
            &from_worker_);
        return;
      } else {
        MaybeFinishLocked();
      }
    }
    StopReading();
  }

  void OnCancel() override { worker_context_.TryCancel(); }

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
  // Each side's OnDone releases one reference; the last one deletes the call,
  // with no lock held (the other side may still be unlocking the mutex).
  void Release() {
    if (references_.fetch_sub(1) == 1) delete this;
  }

  // Called where no further worker read will be started: removes the hold
  // taken before StartCall, once, so that the worker call can end (its OnDone
  // follows, possibly at once on another thread, hence no lock held here).
  void StopReading() {
    if (!reading_stopped_.exchange(true)) {
      grpc::ClientReadReactor<worker::v1::GenerateResponse>::RemoveHold();
    }
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
      grpc::ServerWriteReactor<v1::GenerateResponse>::Finish(status);
      return;
    }
    final_sent_ = true;
    last_.Clear();
    last_.set_request_id(request_id_);
    last_.set_finish_reason(finish_reason_);
    *last_.mutable_usage() = usage_;
    *last_.mutable_timings() = timings_;
    if (watch_ != nullptr) watch_->WriteStarted();
    grpc::ServerWriteReactor<v1::GenerateResponse>::StartWriteAndFinish(
        &last_, grpc::WriteOptions(), grpc::Status::OK);
  }

  ValidatedRequest request_;
  const std::string request_id_;
  const absl::Time arrived_;
  std::unique_ptr<TextStream> text_;
  StopMatcher stops_;
  GenerateCallHooks hooks_;

  grpc::ClientContext worker_context_;
  worker::v1::GenerateResponse from_worker_;
  v1::GenerateResponse to_client_;
  v1::GenerateResponse last_;

  // What the watchdog cancels, valid until the server side's OnDone.
  struct CancelTarget {
    absl::Mutex mu;
    grpc::CallbackServerContext* context ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<CancelTarget> cancel_target_;

  std::atomic<int> references_{2};
  std::atomic<bool> reading_stopped_{false};
  // The two sides' reactions run on gRPC's threads, one of each side at a
  // time but the sides concurrently: what both touch is under mu_.
  absl::Mutex mu_;
  v1::Usage usage_ ABSL_GUARDED_BY(mu_);
  v1::Timings timings_ ABSL_GUARDED_BY(mu_);
  v1::FinishReason finish_reason_ ABSL_GUARDED_BY(mu_) =
      v1::FINISH_REASON_UNSPECIFIED;
  absl::Time first_token_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  grpc::Status worker_status_ ABSL_GUARDED_BY(mu_);
  bool worker_done_ ABSL_GUARDED_BY(mu_) = false;
  bool server_finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  bool final_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<StreamWatchdog::Watch> watch_ ABSL_GUARDED_BY(mu_);
};

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
