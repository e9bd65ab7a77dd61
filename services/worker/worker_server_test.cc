#include "services/worker/worker_server.h"

#include <string>

#include "gtest/gtest.h"
#include "memory_store/testing/in_process_store.h"
#include "services/worker/testing/tiny_worker.h"
#include "tests/testing/generate.h"

namespace longctx {
namespace {

// A worker rank in this process on loopback ports, over the tiny model.
class WorkerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = testing::NewTinyModelDir("worker_server_model");
  }

  WorkerServerOptions Options() {
    return testing::TinyWorkerOptions(model_dir_);
  }

  std::string model_dir_;
};

TEST_F(WorkerServerTest, ServesTheModelAndReportsItsDevice) {
  auto store = testing::InProcessStore::Start();
  WorkerServerOptions options = Options();
  options.memory_stores = {store->address()};
  auto server = WorkerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address =
      "127.0.0.1:" + std::to_string((*server)->grpc_server().port());
  auto status = testing::WorkerStatus(address);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(status->ready());
  EXPECT_EQ(status->device(), "cpu");
  EXPECT_GT(status->kv_cache_bytes(), 0);
  EXPECT_EQ(status->block_size(), 16);

  worker::v1::GenerateRequest request;
  for (int i = 0; i < 40; ++i) request.add_prompt_token_ids(i % 200);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_top_p(1);
  request.set_max_new_tokens(4);
  const grpc::Status generated = testing::WorkerGenerate(address, request);
  EXPECT_TRUE(generated.ok()) << generated.error_message();
  // Two full blocks of the prompt went to the store.
  for (int i = 0; i < 100 && store->store().Stats().blocks < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(store->store().Stats().blocks, 2);
}

TEST_F(WorkerServerTest, AMissingModelFolderIsAnErrorNamingTheFlag) {
  WorkerServerOptions options = Options();
  options.model_dir = model_dir_ + "/nowhere";
  auto server = WorkerServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--model"), std::string::npos)
      << server.status();
}

TEST_F(WorkerServerTest, AGpuRankInAGroupIsUnimplemented) {
  WorkerServerOptions options = Options();
  options.device.device = 0;
  options.identity.group_size = 2;
  options.rendezvous_address = "127.0.0.1:1";
  auto server = WorkerServer::Start(options);
  EXPECT_TRUE(absl::IsUnimplemented(server.status())) << server.status();
}

}  // namespace
}  // namespace longctx
