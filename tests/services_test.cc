// Starts the three longctx binaries on free loopback ports and checks what
// every process promises: health SERVING, reflection listing its services, a
// /metrics page that promtool accepts, exit code 0 on SIGTERM, and one clear
// line and a non-zero exit code on bad configuration.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
#include "tests/testing/generate.h"
#include "tests/testing/process.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::longctx::testing::FreePort;
using ::longctx::testing::Process;
using ::longctx::testing::RunfilePath;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kExitTimeout = absl::Seconds(30);

using ::longctx::testing::CommonFlags;
using ::longctx::testing::Endpoint;
using ::longctx::testing::NewEndpoint;

std::vector<std::string> Concat(std::vector<std::string> a,
                                const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class StackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::NewTempDir("stack");
    model_ = dir_ + "/model";
    absl::Status made = testing::MakeTinyModel(model_);
    ASSERT_TRUE(made.ok()) << made;
  }

  Process StartMemoryStore(const Endpoint& e, const std::string& log) {
    auto p = Process::Start(Concat({RunfilePath("memory_store/memory_store"),
                                    "--data_dir=" + dir_ + "/store"},
                                   CommonFlags(e)),
                            dir_ + "/" + log);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }

  Process StartWorker(const Endpoint& e, const Endpoint& store) {
    auto p = Process::Start(
        Concat({RunfilePath("services/worker/worker"), "--model=" + model_,
                "--memory_store=" + store.address()},
               CommonFlags(e)),
        dir_ + "/worker.log");
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }

  Process StartGateway(const Endpoint& e, const Endpoint& worker,
                       const Endpoint& store) {
    auto p = Process::Start(
        Concat({RunfilePath("services/gateway/gateway"), "--model=" + model_,
                "--workers=" + worker.address(),
                "--memory_store=" + store.address()},
               GatewayFlags(e)),
        dir_ + "/gateway.log");
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }

  // Runs a binary that must refuse to start; returns its log.
  std::string ExpectStartupFailure(const std::vector<std::string>& argv) {
    static int count = 0;
    std::string log = absl::StrCat(dir_, "/refused_", ++count, ".log");
    auto p = Process::Start(argv, log);
    EXPECT_TRUE(p.ok());
    auto code = p->Wait(kExitTimeout);
    EXPECT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 2) << p->Log();
    std::string text = p->Log();
    // One clear line: exactly one line, naming the program and saying "error".
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    return text;
  }

  std::string dir_;
  std::string model_;
};

void ExpectHealthyProcess(const Endpoint& e, const std::string& service,
                          const std::string& expected_metric) {
  SCOPED_TRACE(service);
  ASSERT_TRUE(testing::WaitForServing(e.address(), kStartTimeout).ok());
  auto services = testing::ListServices(e.address());
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, Contains(service));
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services, Contains("grpc.reflection.v1alpha.ServerReflection"));

  auto page = testing::HttpGet(e.metrics_port, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(*page, HasSubstr("longctx_build_info{"));
  EXPECT_THAT(*page, HasSubstr("process_cpu_seconds_total"));
  EXPECT_THAT(*page, HasSubstr("process_resident_memory_bytes"));
  EXPECT_THAT(*page, HasSubstr(expected_metric));
  std::string promtool_output;
  auto rc = testing::RunCommand({"promtool", "check", "metrics"}, *page,
                                &promtool_output);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(*rc, 0) << "promtool check metrics:\n" << promtool_output;
}

TEST_F(StackTest, EveryServiceIsHealthyReflectsAndExportsValidMetrics) {
  Endpoint store_ep = NewEndpoint(), worker_ep = NewEndpoint(),
           gateway_ep = NewEndpoint();
  Process store = StartMemoryStore(store_ep, "store.log");
  Process worker = StartWorker(worker_ep, store_ep);
  Process gateway = StartGateway(gateway_ep, worker_ep, store_ep);

  ExpectHealthyProcess(store_ep, "longctx.memory_store.v1.MemoryStore",
                       "longctx_store_blocks");
  ExpectHealthyProcess(worker_ep, "longctx.worker.v1.Worker",
                       "longctx_kv_blocks_capacity");
  ExpectHealthyProcess(gateway_ep, "longctx.v1.LongContext",
                       "longctx_time_to_first_token_seconds");

  // The public API answers through the gateway.
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      gateway_ep.address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    v1::GetModelInfoRequest request;
    v1::ModelInfo info;
    ASSERT_TRUE(stub->GetModelInfo(&context, request, &info).ok());
    EXPECT_EQ(info.architecture(), "LlamaForCausalLM");
    EXPECT_EQ(info.num_groups(), 1);
    EXPECT_EQ(info.fingerprint().size(), 32u);
  }
  {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text("héllo");
    v1::TokenizeResponse response;
    ASSERT_TRUE(stub->Tokenize(&context, request, &response).ok());
    // The tiny model's tokenizer is byte-level: one token per UTF-8 byte.
    EXPECT_EQ(response.token_ids_size(), 6);
  }

  // SIGTERM: every process drains and exits with code 0.
  for (Process* p : {&gateway, &worker, &store}) {
    p->Signal(SIGTERM);
    auto code = p->Wait(kExitTimeout);
    ASSERT_TRUE(code.ok()) << code.status() << "\n" << p->Log();
    EXPECT_EQ(*code, 0) << p->Log();
  }
}

// A worker answers from its start: while it loads (here: prefaulting a 2 GiB
// KV cache) health says NOT_SERVING, GetStatus not ready and Generate
// UNAVAILABLE; once loaded, SERVING.
TEST_F(StackTest, AWorkerIsNotServingWhileItLoads) {
  const Endpoint e = NewEndpoint();
  auto p = Process::Start(
      Concat({RunfilePath("services/worker/worker"), "--model=" + model_,
              "--kv_cache_bytes=2147483648", "--kv_cache_prefault=true"},
             CommonFlags(e)),
      dir_ + "/loading_worker.log");
  ASSERT_TRUE(p.ok()) << p.status();
  std::string first;
  const absl::Time give_up = absl::Now() + kStartTimeout;
  while (first.empty() && absl::Now() < give_up) {
    absl::StatusOr<std::string> health = testing::HealthStatus(e.address(), "");
    if (health.ok()) {
      first = *health;
    } else {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  EXPECT_EQ(first, "NOT_SERVING") << p->Log();

  absl::StatusOr<worker::v1::WorkerStatus> status =
      testing::WorkerStatus(e.address());
  ASSERT_TRUE(status.ok()) << status.status();
  worker::v1::GenerateRequest request;
  request.add_prompt_token_ids(5);
  request.set_max_new_tokens(1);
  const grpc::Status generated = testing::WorkerGenerate(e.address(), request);
  // Both answers came while it was loading if it still is.
  if (testing::HealthStatus(e.address(), "").value_or("") == "NOT_SERVING") {
    EXPECT_FALSE(status->ready());
    EXPECT_EQ(generated.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(generated.error_message(), HasSubstr("loading"));
  } else {
    ADD_FAILURE() << "the worker loaded before the checks; make it slower";
  }
  EXPECT_TRUE(testing::WaitForServing(e.address(), kStartTimeout).ok())
      << p->Log();
  status = testing::WorkerStatus(e.address());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(status->ready());
  EXPECT_GT(status->kv_blocks_capacity(), 0);
}

TEST_F(StackTest, SecondInstanceOnAUsedPortExitsWithAClearMessage) {
  Endpoint store_ep = NewEndpoint();
  Process store = StartMemoryStore(store_ep, "store.log");
  ASSERT_TRUE(testing::WaitForServing(store_ep.address(), kStartTimeout).ok());

  // Same gRPC port, different metrics port and data dir.
  Endpoint clash{store_ep.grpc_port, FreePort()};
  std::string log = ExpectStartupFailure(Concat(
      {RunfilePath("memory_store/memory_store"), "--data_dir=" + dir_ + "/s2"},
      CommonFlags(clash)));
  EXPECT_THAT(log, HasSubstr("memory_store: error: --listen_address"));
  EXPECT_THAT(log, HasSubstr("already in use"));

  // Same metrics port.
  Endpoint clash_metrics{FreePort(), store_ep.metrics_port};
  log = ExpectStartupFailure(Concat(
      {RunfilePath("memory_store/memory_store"), "--data_dir=" + dir_ + "/s3"},
      CommonFlags(clash_metrics)));
  EXPECT_THAT(log, HasSubstr("--metrics_address"));
  EXPECT_THAT(log, HasSubstr("already in use"));

  // The first instance is unharmed.
  EXPECT_TRUE(testing::WaitForServing(store_ep.address(), kStartTimeout).ok());
}

TEST_F(StackTest, BadConfigurationExitsWithOneClearLine) {
  std::string log = ExpectStartupFailure(
      Concat({RunfilePath("memory_store/memory_store"),
              "--data_dir=/proc/longctx-cannot-write-here"},
             CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("--data_dir=/proc/longctx-cannot-write-here"));

  log = ExpectStartupFailure(Concat({RunfilePath("services/worker/worker"),
                                     "--model=" + dir_ + "/no-such-model"},
                                    CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("worker: error: --model="));

  log = ExpectStartupFailure(
      Concat({RunfilePath("services/gateway/gateway"), "--model=" + model_,
              "--workers=127.0.0.1:1,localhost"},
             CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("gateway: error: --workers=\"localhost\""));

  log = ExpectStartupFailure(Concat(
      {RunfilePath("services/gateway/gateway"), "--model=" + model_,
       "--workers=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "--group_size=2"},
      CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("not a multiple of --group_size=2"));

  log = ExpectStartupFailure({RunfilePath("services/worker/worker"),
                              "--model=" + model_,
                              "--listen_address=127.0.0.1:99999"});
  EXPECT_THAT(log, HasSubstr("--listen_address"));

  log = ExpectStartupFailure(
      Concat({RunfilePath("services/gateway/gateway"), "--model=" + model_,
              "--workers=127.0.0.1:1", "--max_text_bytes=2000000",
              "--max_message_bytes=1000000"},
             CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("--max_message_bytes=1000000 must be above "
                             "--max_text_bytes=2000000"));

  log =
      ExpectStartupFailure(Concat({RunfilePath("services/worker/worker"),
                                   "--model=" + model_, "--max_queue_wait=0s"},
                                  CommonFlags(NewEndpoint())));
  EXPECT_THAT(log, HasSubstr("--max_queue_wait=0 must be positive"));

  // --log_level is read by every service.
  for (const char* binary :
       {"memory_store/memory_store", "services/worker/worker",
        "services/gateway/gateway"}) {
    log = ExpectStartupFailure(Concat({RunfilePath(binary), "--log_level=loud"},
                                      CommonFlags(NewEndpoint())));
    EXPECT_THAT(log, HasSubstr("--log_level=loud is not one of debug, info, "
                               "warning, error"));
  }
}

}  // namespace
}  // namespace longctx
