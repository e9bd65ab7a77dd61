// The relay between a public Generate stream and a worker's, against a fake
// worker whose stream the test scripts: tokens become text as they arrive,
// usage and the finish reason come last, a stop sequence ends the worker's
// call, a client that goes away cancels it, and a worker's error reaches the
// client.
#include "services/gateway/generate_call.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "tests/testing/generate.h"

namespace longctx {
namespace {

// One worker stream: these messages' tokens, then `status`.
struct Script {
  std::vector<std::vector<int32_t>> messages;
  grpc::Status status = grpc::Status::OK;
  v1::FinishReason reason = v1::FINISH_REASON_LENGTH;
  // Wait for the client to go away after the first message.
  bool hang = false;
};

// A worker rank that streams the script and notes a cancellation.
class FakeWorker : public worker::v1::Worker::CallbackService {
 public:
  explicit FakeWorker(Script script) : script_(std::move(script)) {}

  grpc::ServerWriteReactor<worker::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* /*context*/,
      const worker::v1::GenerateRequest* /*request*/) override {
    class Stream
        : public grpc::ServerWriteReactor<worker::v1::GenerateResponse> {
     public:
      explicit Stream(FakeWorker* worker) : worker_(worker) { Next(); }
      void OnWriteDone(bool ok) override {
        writing_ = false;
        if (!ok) return Finish(grpc::Status::CANCELLED);
        Next();
      }
      // A cancelled call still ends with Finish: at once when no write is
      // in flight, else from OnWriteDone.
      void OnCancel() override {
        worker_->cancelled_.Notify();
        if (!writing_) Finish(grpc::Status::CANCELLED);
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        const Script& s = worker_->script_;
        if (sent_ > 0 && s.hang) return;  // Until the client goes away.
        if (sent_ == s.messages.size()) return Finish(s.status);
        out_.Clear();
        for (int32_t t : s.messages[sent_]) out_.add_token_ids(t);
        out_.set_cached_tokens(3);
        if (++sent_ == s.messages.size() && s.status.ok() && !s.hang) {
          out_.set_finished(true);
          out_.set_finish_reason(s.reason);
        }
        writing_ = true;
        StartWrite(&out_);
      }
      FakeWorker* const worker_;
      std::atomic<bool> writing_{false};
      size_t sent_ = 0;
      worker::v1::GenerateResponse out_;
    };
    return new Stream(this);
  }

  absl::Notification& cancelled() { return cancelled_; }

 private:
  const Script script_;
  absl::Notification cancelled_;
};

// Token i is the character 'a' + i.
class LetterStream : public TextStream {
 public:
  std::string Push(absl::Span<const int32_t> ids) override {
    std::string out;
    for (int32_t id : ids) out += static_cast<char>('a' + id);
    return out;
  }
  std::string Flush() override { return ""; }
  std::string TokenText(int32_t id) override {
    return std::string(1, static_cast<char>('a' + id));
  }
};

// The public side: every Generate is relayed to the fake worker.
class Relay : public v1::LongContext::CallbackService {
 public:
  Relay(worker::v1::Worker::Stub* worker, std::vector<std::string> stops)
      : worker_(worker), stops_(std::move(stops)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const v1::GenerateRequest* request) override {
    ValidatedRequest validated;
    for (int32_t id : request->token_ids().ids()) {
      validated.worker_request.add_prompt_token_ids(id);
    }
    validated.stop_sequences = stops_;
    GenerateCallHooks hooks;
    hooks.on_done = [this](const grpc::Status& status, const v1::Usage& usage,
                           const v1::Timings&) {
      done_status_ = status.error_code();
      done_usage_ = usage;
      done_.Notify();
    };
    return StartGenerateCall(context, worker_, std::move(validated), "req-1",
                             absl::Now(), std::make_unique<LetterStream>(),
                             std::move(hooks));
  }

  absl::Notification done_;
  grpc::StatusCode done_status_ = grpc::StatusCode::UNKNOWN;
  v1::Usage done_usage_;

 private:
  worker::v1::Worker::Stub* const worker_;
  const std::vector<std::string> stops_;
};

class GenerateCallTest : public ::testing::Test {
 protected:
  void Start(Script script, std::vector<std::string> stops = {}) {
    worker_ = std::make_unique<FakeWorker>(std::move(script));
    GrpcServerOptions options;
    options.listen = {"127.0.0.1", 0};
    worker_server_ = *GrpcServer::Start(options, {worker_.get()});
    stub_ = worker::v1::Worker::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(worker_server_->port()),
        grpc::InsecureChannelCredentials()));
    relay_ = std::make_unique<Relay>(stub_.get(), std::move(stops));
    relay_server_ = *GrpcServer::Start(options, {relay_.get()});
    address_ = "127.0.0.1:" + std::to_string(relay_server_->port());
  }

  v1::GenerateRequest Request() {
    v1::GenerateRequest request;
    for (int32_t id : {1, 2, 3}) request.mutable_token_ids()->add_ids(id);
    return request;
  }

  std::unique_ptr<FakeWorker> worker_;
  std::unique_ptr<GrpcServer> worker_server_;
  std::unique_ptr<worker::v1::Worker::Stub> stub_;
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<GrpcServer> relay_server_;
  std::string address_;
};

TEST_F(GenerateCallTest, RelaysTokensAsTextThenUsageAndReason) {
  Script script;
  script.messages = {{0, 1}, {2}, {3, 4}};
  Start(script);
  const testing::GenerateResult result = testing::Generate(address_, Request());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.tokens, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(result.text, "abcde");
  EXPECT_EQ(result.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(result.last.usage().prompt_tokens(), 3);
  EXPECT_EQ(result.last.usage().generated_tokens(), 5);
  EXPECT_EQ(result.last.usage().cached_tokens(), 3);
  ASSERT_TRUE(relay_->done_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(relay_->done_status_, grpc::StatusCode::OK);
}

TEST_F(GenerateCallTest, AStopSequenceEndsTheWorkersCall) {
  Script script;
  script.messages = {{0, 1}, {2}, {3, 4}};
  script.hang = true;  // The worker would stream on; the stop must end it.
  Start(script, {"b"});
  const testing::GenerateResult result = testing::Generate(address_, Request());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text, "a");
  EXPECT_EQ(result.last.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_TRUE(
      worker_->cancelled().WaitForNotificationWithTimeout(absl::Seconds(5)));
}

TEST_F(GenerateCallTest, AClientThatGoesAwayCancelsTheWorker) {
  Script script;
  script.messages = {{0}, {1}};
  script.hang = true;
  Start(script);
  auto channel =
      grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  auto stub = v1::LongContext::NewStub(channel);
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, Request());
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  context.TryCancel();
  EXPECT_TRUE(
      worker_->cancelled().WaitForNotificationWithTimeout(absl::Seconds(5)));
  ASSERT_TRUE(relay_->done_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(relay_->done_status_, grpc::StatusCode::CANCELLED);
}

TEST_F(GenerateCallTest, AWorkersErrorReachesTheClient) {
  Script script;
  script.messages = {{0}};
  script.status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "the worker's queue is full");
  Start(script);
  const testing::GenerateResult result = testing::Generate(address_, Request());
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(result.status.error_message(), "the worker's queue is full");
  EXPECT_EQ(result.tokens, (std::vector<int32_t>{0}));
}

}  // namespace
}  // namespace longctx
