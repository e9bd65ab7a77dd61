// Prefix routing end to end: a gateway, two workers (groups of one rank) and a
// memory_store on loopback. Requests over a document the gateway has seen go
// to the worker that computed it, which serves the prefix from its memory.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "tests/testing/generate.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using Result = testing::GenerateResult;

// The value of an unlabelled sample `name` on a /metrics page, or -1.
double Sample(const std::string& page, const std::string& name) {
  size_t at = page.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + name.size() + 2));
}

class PrefixRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::StackOptions options;
    options.num_workers = 2;
    absl::Status status = stack_.Start(options);
    ASSERT_TRUE(status.ok()) << status;
    stub_ = v1::LongContext::NewStub(grpc::CreateChannel(
        stack_.gateway().address(), grpc::InsecureChannelCredentials()));
  }

  Result Generate(const std::string& text, int max_new) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_stopping()->set_max_new_tokens(max_new);
    request.mutable_stopping()->set_ignore_eos(true);
    request.mutable_sampling()->set_temperature(0);
    return testing::Generate(*stub_, request);
  }

  double WorkerSample(int worker, const std::string& name) {
    auto page =
        testing::HttpGet(stack_.workers()[worker].metrics_port, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? Sample(*page, name) : -1;
  }

  testing::LocalStack stack_;
  std::unique_ptr<v1::LongContext::Stub> stub_;
};

std::string Document(const std::string& word) {
  std::string document;
  for (int i = 0; document.size() < 3000; ++i) {
    absl::StrAppend(&document, word, " ", i, " binds the parties. ");
  }
  document.resize(3000);  // 11 full blocks of 256 tokens, byte tokenizer.
  return document;
}

TEST_F(PrefixRoutingTest, RepeatedDocumentsStayOnTheWorkerThatHoldsThem) {
  // Short prompts (no full block) until the gateway has sent one to each
  // worker: both groups are ready in its eyes, and equal loads alternate.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (WorkerSample(0, "longctx_prefill_tokens_total") <= 0 ||
         WorkerSample(1, "longctx_prefill_tokens_total") <= 0) {
    ASSERT_LT(absl::Now(), deadline) << stack_.Logs();
    Result r = Generate("warm up", 1);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message() << stack_.Logs();
    absl::SleepFor(absl::Milliseconds(50));  // The gateway probes each second.
  }

  // Load alone would alternate: x y x y x y. The prefix keeps each document
  // on its first worker: x y x x y y.
  const std::string a = Document("Clause");
  const std::string b = Document("Article");
  Result cold_a = Generate(a, 6);
  Result cold_b = Generate(b, 6);
  ASSERT_TRUE(cold_a.status.ok() && cold_b.status.ok());
  EXPECT_EQ(cold_a.last.usage().cached_tokens(), 0);
  EXPECT_EQ(cold_b.last.usage().cached_tokens(), 0);
  for (const std::string* doc : {&a, &a, &b, &b}) {
    Result r = Generate(*doc, 6);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.last.usage().cached_tokens(), 2816);
    EXPECT_EQ(r.tokens, doc == &a ? cold_a.tokens : cold_b.tokens);
  }
  // Each worker served its own document twice from memory and read nothing
  // back from the store.
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(WorkerSample(w, "longctx_prefix_cache_hit_tokens_total"),
              2 * 2816)
        << "worker " << w;
    EXPECT_EQ(WorkerSample(w, "longctx_restore_blocks_total"), 0)
        << "worker " << w;
  }
  auto gateway = testing::HttpGet(stack_.gateway().metrics_port, "/metrics");
  ASSERT_TRUE(gateway.ok());
  EXPECT_EQ(Sample(*gateway, "longctx_prefix_affinity_requests_total"), 4);
}

}  // namespace
}  // namespace longctx
