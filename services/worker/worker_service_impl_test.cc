#include "services/worker/worker_service_impl.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/testing/random_llama.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_auth.h"
#include "services/common/tls.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

// The service over an engine of a small random model, on a loopback port.
class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    random_ = testing::MakeRandomLlama(/*biases=*/true, /*tied=*/false, 8);
    model_ = *LlamaModel::Create(random_.shape, random_.weights, {});
    const KvLayout layout = model_->KvLayoutFor(16, KvDtype::kF16);
    pool_ = *KvBlockPool::Create(layout, layout.BlockBytes() * 32);
    engine_ =
        std::make_unique<Engine>(model_.get(), pool_.get(), EngineOptions());
    WorkerIdentity identity;
    identity.group_id = "group-4";
    identity.rank = 0;
    identity.group_size = 1;
    service_ = std::make_unique<WorkerServiceImpl>(identity);
    server_ = Serve(*service_);
    stub_ = worker::v1::Worker::NewStub(grpc::CreateChannel(
        Address(*server_), grpc::InsecureChannelCredentials()));
  }

  // Serves `service` on a free loopback port (the fixture's, or another
  // configured otherwise over the same engine).
  static std::unique_ptr<GrpcServer> Serve(WorkerServiceImpl& service) {
    GrpcServerOptions options;
    options.listen = {"127.0.0.1", 0};
    return *GrpcServer::Start(options, {&service});
  }
  static std::string Address(const GrpcServer& server) {
    return "127.0.0.1:" + std::to_string(server.port());
  }

  void TearDown() override {
    server_->Shutdown(absl::ZeroDuration());
    engine_.reset();
  }

  void AttachEngine() {
    service_->Attach("00112233445566778899aabbccddeeff", model_->vocab_size(),
                     engine_.get(), pool_.get(), [] {
                       DeviceReport report;
                       report.device = "cpu";
                       report.kv_cache_bytes = 1234;
                       return report;
                     });
    service_->SetReady(true);
  }

  worker::v1::GenerateRequest Greedy(int prompt_tokens, int max_new) {
    worker::v1::GenerateRequest request;
    for (int32_t t :
         testing::RandomTokens(prompt_tokens, random_.shape.vocab_size, 3)) {
      request.add_prompt_token_ids(t);
    }
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_top_p(1);
    request.set_max_new_tokens(max_new);
    return request;
  }

  struct Stream {
    grpc::Status status;
    std::vector<worker::v1::GenerateResponse> messages;
    std::vector<int32_t> tokens;
  };

  Stream Read(const worker::v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    auto reader = stub_->Generate(&context, request);
    Stream out;
    worker::v1::GenerateResponse response;
    while (reader->Read(&response)) {
      out.tokens.insert(out.tokens.end(), response.token_ids().begin(),
                        response.token_ids().end());
      out.messages.push_back(response);
    }
    out.status = reader->Finish();
    return out;
  }

  // What the engine generates for the same request, called directly.
  std::vector<int32_t> Direct(const worker::v1::GenerateRequest& request) {
    GenerateParams params;
    params.prompt.assign(request.prompt_token_ids().begin(),
                         request.prompt_token_ids().end());
    params.temperature = 0;
    params.max_new_tokens = request.max_new_tokens();
    params.stop_token_ids.assign(request.stop_token_ids().begin(),
                                 request.stop_token_ids().end());
    std::vector<int32_t> tokens;
    absl::Notification done;
    auto id = engine_->Submit(std::move(params), [&](TokenEvent event) {
      tokens.insert(tokens.end(), event.tokens.begin(), event.tokens.end());
      if (event.finished) done.Notify();
    });
    EXPECT_TRUE(id.ok()) << id.status();
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    return tokens;
  }

  testing::RandomLlama random_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvBlockPool> pool_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<worker::v1::Worker::Stub> stub_;
};

TEST_F(WorkerServiceTest, BeforeAttachItIsNotReadyAndRefusesGenerate) {
  grpc::ClientContext context;
  worker::v1::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&context, {}, &status).ok());
  EXPECT_FALSE(status.ready());
  EXPECT_EQ(status.group_id(), "group-4");
  EXPECT_EQ(status.model_fingerprint(), "");
  EXPECT_EQ(Read(Greedy(10, 2)).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(WorkerServiceTest, StatusReportsTheModelPoolAndDevice) {
  AttachEngine();
  grpc::ClientContext context;
  worker::v1::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&context, {}, &status).ok());
  EXPECT_TRUE(status.ready());
  EXPECT_EQ(status.model_fingerprint(), "00112233445566778899aabbccddeeff");
  EXPECT_EQ(status.rank(), 0);
  EXPECT_EQ(status.group_size(), 1);
  EXPECT_EQ(status.block_size(), 16);
  EXPECT_EQ(status.kv_blocks_capacity(), 32);
  EXPECT_EQ(status.kv_blocks_used(), 0);
  EXPECT_EQ(status.device(), "cpu");
  EXPECT_EQ(status.kv_cache_bytes(), 1234);
}

TEST_F(WorkerServiceTest, StreamsWhatTheEngineGeneratesAndWhyItStopped) {
  AttachEngine();
  worker::v1::GenerateRequest request = Greedy(37, 6);
  request.mutable_logprobs()->set_enabled(true);
  request.mutable_logprobs()->set_top_logprobs(2);
  const Stream stream = Read(request);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  const std::vector<int32_t> direct = Direct(request);
  EXPECT_EQ(stream.tokens, direct);
  ASSERT_FALSE(stream.messages.empty());
  const worker::v1::GenerateResponse& last = stream.messages.back();
  EXPECT_TRUE(last.finished());
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  int logprobs = 0;
  for (const auto& message : stream.messages) {
    ASSERT_EQ(message.logprobs_size(), message.token_ids_size());
    for (int i = 0; i < message.logprobs_size(); ++i, ++logprobs) {
      const v1::TokenLogprob& l = message.logprobs(i);
      EXPECT_EQ(l.token_id(), message.token_ids(i));
      EXPECT_LE(l.logprob(), 0);
      ASSERT_EQ(l.top_size(), 2);
      // Greedy: the chosen token is the most likely one.
      EXPECT_EQ(l.top(0).token_id(), l.token_id());
      EXPECT_FLOAT_EQ(l.top(0).logprob(), l.logprob());
      EXPECT_LE(l.top(1).logprob(), l.top(0).logprob());
    }
  }
  EXPECT_EQ(logprobs, 6);

  // The third token as a stop token ends the stream there.
  request.add_stop_token_ids(direct[2]);
  const Stream stopped = Read(request);
  ASSERT_TRUE(stopped.status.ok()) << stopped.status.error_message();
  const int first = static_cast<int>(
      std::find(direct.begin(), direct.end(), direct[2]) - direct.begin());
  EXPECT_EQ(stopped.tokens,
            std::vector<int32_t>(direct.begin(), direct.begin() + first + 1));
  EXPECT_EQ(stopped.messages.back().finish_reason(),
            v1::FINISH_REASON_STOP_TOKEN);
}

TEST_F(WorkerServiceTest, RefusesMalformedRequestsNamingTheField) {
  AttachEngine();
  worker::v1::GenerateRequest empty = Greedy(5, 2);
  empty.clear_prompt_token_ids();
  Stream refused = Read(empty);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("prompt_token_ids"));

  worker::v1::GenerateRequest none = Greedy(5, 0);
  refused = Read(none);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("max_new_tokens"));

  worker::v1::GenerateRequest top_p = Greedy(5, 2);
  top_p.mutable_sampling()->set_top_p(0);
  refused = Read(top_p);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // More than the pool can ever hold: RESOURCE_EXHAUSTED, naming the flag.
  refused = Read(Greedy(32 * 16, 8));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("--kv_cache_bytes"));

  // Nothing was left behind.
  grpc::ClientContext context;
  worker::v1::WorkerStatus status;
  ASSERT_TRUE(stub_->GetStatus(&context, {}, &status).ok());
  EXPECT_EQ(status.running_sequences(), 0);
  EXPECT_EQ(status.waiting_sequences(), 0);
}

// Requests sent straight to a worker, past the gateway, are checked with the
// gateway's rules: each hostile one fails alone, and a request running beside
// them gets exactly the tokens it gets on its own.
TEST_F(WorkerServiceTest, HostileRequestsFailAloneAndHarmNoOtherSequence) {
  AttachEngine();
  const int vocab = random_.shape.vocab_size;
  const worker::v1::GenerateRequest good = Greedy(40, 12);
  const std::vector<int32_t> expected = Direct(good);
  Stream running;
  std::thread runner([&] { running = Read(good); });

  std::vector<worker::v1::GenerateRequest> hostile(7, Greedy(9, 4));
  hostile[0].set_prompt_token_ids(3, vocab);
  hostile[1].set_prompt_token_ids(0, -5);
  hostile[2].set_max_new_tokens(std::numeric_limits<int32_t>::max());
  hostile[3].mutable_sampling()->set_temperature(NAN);
  hostile[4].add_stop_token_ids(vocab + 1);
  hostile[5].mutable_logprobs()->set_enabled(true);
  hostile[5].mutable_logprobs()->set_top_logprobs(100000);
  hostile[6].set_cache_policy(static_cast<v1::CachePolicy>(99));
  for (const auto& request : hostile) {
    Stream refused = Read(request);
    EXPECT_TRUE(
        refused.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        refused.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << refused.status.error_message();
    EXPECT_TRUE(refused.tokens.empty());
  }
  runner.join();
  ASSERT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(running.tokens, expected);
}

// With an internal token, the worker serves only callers that send it.
TEST_F(WorkerServiceTest, WithAnInternalTokenStrangersAreRefused) {
  const std::string token(40, 'w');
  WorkerServiceImpl guarded{WorkerIdentity(), InternalAuth(token)};
  guarded.Attach("00112233445566778899aabbccddeeff", model_->vocab_size(),
                 engine_.get(), pool_.get());
  guarded.SetReady(true);
  auto server = Serve(guarded);
  const std::string address = Address(*server);
  auto status_of = [&](const ChannelSecurity& security) {
    auto stub = worker::v1::Worker::NewStub(security.NewChannel(address));
    grpc::ClientContext status_context;
    worker::v1::WorkerStatus status;
    grpc::Status get = stub->GetStatus(&status_context, {}, &status);
    grpc::ClientContext generate_context;
    auto reader = stub->Generate(&generate_context, Greedy(5, 2));
    worker::v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return std::make_pair(get, reader->Finish());
  };
  auto [get, generate] = status_of(ChannelSecurity());
  EXPECT_EQ(get.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(generate.error_message(), HasSubstr("worker is internal"));
  std::tie(get, generate) = status_of(ChannelSecurity().WithBearerToken(token));
  EXPECT_TRUE(get.ok()) << get.error_message();
  EXPECT_TRUE(generate.ok()) << generate.error_message();
  server->Shutdown(absl::ZeroDuration());
}

// A rank whose engine step runs longer than its stall threshold says it is
// not ready, and why; between requests it is ready again. (A threshold of 0:
// every step in progress counts, so the test needs no slow step.)
TEST_F(WorkerServiceTest, AStepRunningTooLongMakesTheRankNotReady) {
  AttachEngine();  // Requests go through the fixture's service.
  WorkerServiceImpl watched{WorkerIdentity(), InternalAuth(),
                            absl::ZeroDuration()};
  watched.Attach("00112233445566778899aabbccddeeff", model_->vocab_size(),
                 engine_.get(), pool_.get());
  watched.SetReady(true);
  auto server = Serve(watched);
  auto stub = worker::v1::Worker::NewStub(grpc::CreateChannel(
      Address(*server), grpc::InsecureChannelCredentials()));
  auto status_now = [&] {
    grpc::ClientContext context;
    worker::v1::WorkerStatus status;
    EXPECT_TRUE(stub->GetStatus(&context, {}, &status).ok());
    return status;
  };
  EXPECT_TRUE(status_now().ready());  // Idle: no step runs.

  std::atomic<bool> done{false};
  std::thread runner([&] {
    Read(Greedy(200, 300));
    done = true;
  });
  worker::v1::WorkerStatus stalled;
  while (!done && stalled.not_ready_reason().empty()) {
    worker::v1::WorkerStatus status = status_now();
    if (!status.ready()) stalled = status;
  }
  runner.join();
  EXPECT_THAT(stalled.not_ready_reason(), HasSubstr("--step_stall_seconds"));
  EXPECT_TRUE(status_now().ready());
  server->Shutdown(absl::ZeroDuration());
}

TEST_F(WorkerServiceTest, ARankWithoutAnEngineRefusesGenerate) {
  service_->Attach("00112233445566778899aabbccddeeff", model_->vocab_size(),
                   nullptr, pool_.get());
  service_->SetReady(true);
  EXPECT_EQ(Read(Greedy(10, 2)).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace longctx
