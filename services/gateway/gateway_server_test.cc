#include "services/gateway/gateway_server.h"

#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/worker/testing/tiny_worker.h"
#include "services/worker/worker_server.h"
#include "tests/testing/generate.h"

namespace longctx {
namespace {

// A worker rank and the gateway in front of it, both in this process on
// loopback ports, over the tiny model.
class GatewayServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = testing::NewTinyModelDir("gateway_server_model");
    auto started = WorkerServer::Start(testing::TinyWorkerOptions(model_dir_));
    ASSERT_TRUE(started.ok()) << started.status();
    worker_ = *std::move(started);
  }

  GatewayServerOptions Options() {
    GatewayServerOptions o;
    o.grpc.listen = {"127.0.0.1", 0};
    o.metrics_address = {"127.0.0.1", 0};
    o.model_dir = model_dir_;
    o.workers = {{"127.0.0.1", worker_->grpc_server().port()}};
    return o;
  }

  // Generate of `text` through the gateway, retried while no worker group
  // is ready yet (the pool probes the workers in the background).
  testing::GenerateResult GenerateWhenReady(GatewayServer& gateway,
                                            const std::string& text) {
    const std::string address =
        "127.0.0.1:" + std::to_string(gateway.grpc_server().port());
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_stopping()->set_max_new_tokens(4);
    request.mutable_sampling()->set_temperature(0);
    testing::GenerateResult result;
    for (int i = 0; i < 100; ++i) {
      result = testing::Generate(address, request, absl::Seconds(30));
      if (result.status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return result;
  }

  std::string model_dir_;
  std::unique_ptr<WorkerServer> worker_;
};

TEST_F(GatewayServerTest, ServesGenerateThroughItsWorkers) {
  auto gateway = GatewayServer::Start(Options());
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const testing::GenerateResult result =
      GenerateWhenReady(**gateway, "Once upon a time");
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.last.usage().generated_tokens(), 4);
  EXPECT_EQ(result.last.usage().prompt_tokens(), 16);
}

TEST_F(GatewayServerTest, DrainingRefusesNewRequestsWithUnavailable) {
  auto gateway = GatewayServer::Start(Options());
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE(GenerateWhenReady(**gateway, "warm").status.ok());
  DrainHooks drain = (*gateway)->drain_hooks();
  drain.start();
  EXPECT_TRUE(drain.idle());
  const std::string address =
      "127.0.0.1:" + std::to_string((*gateway)->grpc_server().port());
  v1::GenerateRequest request;
  request.set_text("late");
  const testing::GenerateResult late = testing::Generate(address, request);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << late.status.error_message();
}

TEST_F(GatewayServerTest, AMissingModelFolderIsAnErrorNamingTheFlag) {
  GatewayServerOptions options = Options();
  options.model_dir = model_dir_ + "/nowhere";
  auto gateway = GatewayServer::Start(options);
  ASSERT_FALSE(gateway.ok());
  EXPECT_NE(gateway.status().message().find("--model"), std::string::npos)
      << gateway.status();
}

}  // namespace
}  // namespace longctx
