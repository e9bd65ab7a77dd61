// The same-host read path end to end: a memory_store serving --local_socket
// and a worker reading its restores there (--memory_store_local_sockets),
// with the prefix cache off so that every repeat of a document is restored
// from the store.
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "tests/testing/generate.h"
#include "tests/testing/process.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using Result = testing::GenerateResult;

// The sum of metric `name`'s samples on the /metrics page at `metrics_port`.
double MetricOf(int metrics_port, const std::string& name) {
  auto page = testing::HttpGet(metrics_port, "/metrics");
  EXPECT_TRUE(page.ok()) << page.status();
  return page.ok() ? testing::MetricSum(*page, name) : -1;
}

TEST(LocalStoreTest, RestoresGoOverTheStoresLocalSocket) {
  // A short folder: a socket's path has at most 107 bytes.
  char dir[] = "/tmp/lctx_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string socket = std::string(dir) + "/store.sock";
  testing::StackOptions options;
  options.store_flags = {"--local_socket=" + socket};
  options.worker_flags = {"--memory_store_local_sockets=" + socket,
                          "--prefix_cache=false"};
  testing::LocalStack stack;
  absl::Status status = stack.Start(options);
  ASSERT_TRUE(status.ok()) << status;
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));

  std::string document;
  for (int i = 0; document.size() < 3000; ++i) {
    absl::StrAppend(&document, "Clause ", i, " binds the parties. ");
  }
  document.resize(3000);  // 11 full blocks of 256 tokens, byte tokenizer.
  v1::GenerateRequest request;
  request.set_text(document);
  request.mutable_stopping()->set_max_new_tokens(6);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_sampling()->set_temperature(0);
  Result cold = testing::Generate(*stub, request);
  ASSERT_TRUE(cold.status.ok()) << cold.status.error_message();
  // Offload runs behind the computation: ask again until every block is
  // stored and restored.
  Result warm;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    warm = testing::Generate(*stub, request);
    ASSERT_TRUE(warm.status.ok()) << warm.status.error_message();
  } while (warm.last.usage().cached_tokens() < 2816 && absl::Now() < deadline);
  EXPECT_EQ(warm.last.usage().cached_tokens(), 2816) << stack.Logs();
  EXPECT_EQ(warm.tokens, cold.tokens);
  // Restored from the store (no prefix cache), and read over its socket.
  EXPECT_GE(
      MetricOf(stack.workers()[0].metrics_port, "longctx_restore_blocks_total"),
      11);
  EXPECT_GE(MetricOf(stack.store().metrics_port,
                     "longctx_store_local_blocks_read_total"),
            11)
      << stack.Logs();
}

}  // namespace
}  // namespace longctx
