// Generate end to end: a real gateway, worker and memory_store on loopback, the
// tiny model, and a gRPC client.
#include "tests/testing/generate.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

// One Generate call's stream, collected.
using Result = testing::GenerateResult;

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new testing::LocalStack();
    absl::Status status = stack_->Start({});
    ASSERT_TRUE(status.ok()) << status;
  }
  static void TearDownTestSuite() { delete stack_; }

  void SetUp() override {
    ASSERT_NE(stack_, nullptr);
    stub_ = v1::LongContext::NewStub(grpc::CreateChannel(
        stack_->gateway().address(), grpc::InsecureChannelCredentials()));
  }

  Result Generate(const v1::GenerateRequest& request,
                  absl::Duration deadline = absl::Seconds(120)) {
    return testing::Generate(*stub_, request, deadline);
  }

  static v1::GenerateRequest TextRequest(const std::string& text, int max_new) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_stopping()->set_max_new_tokens(max_new);
    request.mutable_stopping()->set_ignore_eos(true);
    return request;
  }

  // Expects `request` to fail with `code` and a message containing `field`, and
  // the server to answer a good request right after.
  void ExpectRejected(const v1::GenerateRequest& request, grpc::StatusCode code,
                      const std::string& field) {
    Result bad = Generate(request);
    EXPECT_EQ(bad.status.error_code(), code) << bad.status.error_message();
    EXPECT_THAT(bad.status.error_message(), HasSubstr(field));
    EXPECT_TRUE(bad.tokens.empty());
    Result good = Generate(TextRequest("still serving", 2));
    EXPECT_TRUE(good.status.ok()) << good.status.error_message();
  }

  static testing::LocalStack* stack_;
  std::unique_ptr<v1::LongContext::Stub> stub_;
};

testing::LocalStack* GenerateTest::stack_ = nullptr;

TEST_F(GenerateTest, StreamsTokensThenUsageFinishReasonAndTimings) {
  v1::GenerateRequest request = TextRequest("Once upon a time", 12);
  request.mutable_sampling()->set_temperature(0);
  Result r = Generate(request);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message() << stack_->Logs();
  EXPECT_EQ(r.tokens.size(), 12u);
  EXPECT_GE(r.messages, 2);  // Tokens stream before the final message.
  EXPECT_EQ(r.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.last.usage().prompt_tokens(), 16);  // Byte tokenizer.
  EXPECT_EQ(r.last.usage().generated_tokens(), 12);
  EXPECT_GT(r.last.timings().total_seconds(), 0);
  EXPECT_GT(r.last.timings().time_to_first_token_seconds(), 0);
  EXPECT_LE(r.last.timings().time_to_first_token_seconds(),
            r.last.timings().total_seconds());
  EXPECT_FALSE(r.last.request_id().empty());
}

TEST_F(GenerateTest, TokenIdsAndTextPromptsAgree) {
  v1::GenerateRequest by_text = TextRequest("abc", 6);
  by_text.mutable_sampling()->set_temperature(0);
  v1::GenerateRequest by_ids = by_text;
  for (char c : std::string("abc")) by_ids.mutable_token_ids()->add_ids(c);
  Result a = Generate(by_text);
  Result b = Generate(by_ids);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
}

TEST_F(GenerateTest, AFixedSeedGivesTheSameOutput) {
  v1::GenerateRequest request = TextRequest("The quick brown fox", 20);
  request.mutable_sampling()->set_temperature(0.9f);
  request.mutable_sampling()->set_top_p(0.95f);
  request.mutable_sampling()->set_seed(1234);
  Result a = Generate(request);
  Result b = Generate(request);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
}

TEST_F(GenerateTest, LogprobsComeWithTheirAlternatives) {
  v1::GenerateRequest request = TextRequest("hello", 4);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_logprobs()->set_enabled(true);
  request.mutable_logprobs()->set_top_logprobs(3);
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse response;
  int logprobs = 0;
  while (reader->Read(&response)) {
    ASSERT_EQ(response.logprobs_size(), response.token_ids_size());
    for (int i = 0; i < response.logprobs_size(); ++i) {
      const v1::TokenLogprob& lp = response.logprobs(i);
      EXPECT_EQ(lp.token_id(), response.token_ids(i));
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_size(), 3);
      // Greedy: the chosen token is the most likely one.
      EXPECT_EQ(lp.top(0).token_id(), lp.token_id());
      EXPECT_GE(lp.top(0).logprob(), lp.top(1).logprob());
      ++logprobs;
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(logprobs, 4);
}

TEST_F(GenerateTest, StopSequenceEndsTheTextBeforeIt) {
  v1::GenerateRequest request = TextRequest("Stop here", 40);
  request.mutable_sampling()->set_temperature(0);
  Result full = Generate(request);
  ASSERT_TRUE(full.status.ok());
  // The tiny model's text is arbitrary bytes: stop at a printable ASCII
  // character of the greedy continuation (never part of a multi-byte
  // character).
  size_t at = 1;
  while (at < full.text.size() &&
         !(full.text[at] >= 0x21 && full.text[at] <= 0x7e)) {
    ++at;
  }
  ASSERT_LT(at, full.text.size()) << "no ASCII in the continuation";
  const std::string stop = full.text.substr(at, 1);
  request.mutable_stopping()->add_stop_sequences(stop);
  Result stopped = Generate(request);
  ASSERT_TRUE(stopped.status.ok()) << stopped.status.error_message();
  EXPECT_EQ(stopped.last.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(stopped.text, full.text.substr(0, full.text.find(stop)));
}

TEST_F(GenerateTest, EachBadInputGetsAClearStatusAndTheServerKeepsServing) {
  v1::GenerateRequest r;
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "prompt is empty");
  r = TextRequest("", 4);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "prompt is empty");
  r = TextRequest("x", 4);
  r.clear_text();
  r.mutable_token_ids()->add_ids(5);
  r.mutable_token_ids()->add_ids(100000);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT,
                 "token_ids.ids[1] is 100000");
  r = TextRequest("x", 100000);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "--max_new_tokens");
  r = TextRequest("x", 4);
  r.mutable_sampling()->set_temperature(-1);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature");
  r = TextRequest("x", 4);
  r.mutable_sampling()->set_top_p(1.5f);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p");
  r = TextRequest("x", 4);
  r.mutable_sampling()->set_top_p(0);
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p");
  r = TextRequest("x", 4);
  r.set_model("no-such-model");
  ExpectRejected(r, grpc::StatusCode::INVALID_ARGUMENT, "no-such-model");
  r = TextRequest(std::string(140000, 'a'), 4);
  ExpectRejected(r, grpc::StatusCode::RESOURCE_EXHAUSTED,
                 "--max_prompt_tokens");
}

TEST_F(GenerateTest, ACancelledRequestFreesItsKvAtOnce) {
  auto worker = worker::v1::Worker::NewStub(grpc::CreateChannel(
      stack_->workers()[0].address(), grpc::InsecureChannelCredentials()));
  auto used_blocks = [&] {
    grpc::ClientContext context;
    worker::v1::WorkerStatus status;
    EXPECT_TRUE(worker->GetStatus(&context, {}, &status).ok());
    return status.kv_blocks_used();
  };
  {
    grpc::ClientContext context;
    v1::GenerateRequest request = TextRequest(std::string(3000, 'z'), 4000);
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_GT(used_blocks(), 0);
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (used_blocks() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(used_blocks(), 0);
}

TEST_F(GenerateTest, StreamsAContinuationOfATwentyThousandTokenText) {
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) {
    absl::StrAppend(&text, "Chapter ", i, ". It was a long document, and ");
  }
  text.resize(20000);
  v1::GenerateRequest request = TextRequest(text, 16);
  Result r = Generate(request, absl::Seconds(240));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.last.usage().prompt_tokens(), 20000);
  EXPECT_EQ(r.tokens.size(), 16u);
}

TEST_F(GenerateTest, ThePythonClientStreamsFromTheStack) {
  std::string output;
  auto rc = testing::RunCommand(
      {"/usr/bin/python3",
       testing::RunfilePath("tools/clients/python/longctx_client.py"),
       "--address=" + stack_->gateway().address(), "--max-new-tokens=7",
       "--temperature=0", "a prompt from python"},
      "", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("[FINISH_REASON_LENGTH] prompt 20 tokens"));
  EXPECT_THAT(output, HasSubstr("generated 7"));
}

TEST_F(GenerateTest, TheCommandLineClientPassesEveryOption) {
  const std::string generate =
      testing::RunfilePath("tools/clients/cpp/generate");
  std::string out;
  auto rc = testing::RunCommand(
      {generate, "--address=" + stack_->gateway().address(),
       "--max_new_tokens=6", "--temperature=0.7", "--top_k=20", "--top_p=0.9",
       "--seed=5", "--ignore_eos", "--logprobs", "--top_logprobs=2",
       "--request_id=cli-1", "--cache_policy=disabled"},
      "prompt on stdin", &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("[FINISH_REASON_LENGTH] prompt 15 tokens"));
  EXPECT_THAT(out, HasSubstr("generated 6"));
  EXPECT_THAT(out, HasSubstr("logprob"));
  // The server's validation reaches the user as the status and its message.
  rc = testing::RunCommand(
      {generate, "--address=" + stack_->gateway().address(), "--top_p=2"}, "x",
      &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 1);
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT: sampling.top_p"));
}

TEST_F(GenerateTest, TheLoadGeneratorReportsEveryRequest) {
  for (const char* workload : {"book", "conversation"}) {
    std::string out;
    auto rc = testing::RunCommand(
        {testing::RunfilePath("tools/loadgen/loadgen"),
         "--address=" + stack_->gateway().address(),
         std::string("--workload=") + workload, "--requests=6",
         "--concurrency=2", "--document_chars=3000", "--max_new_tokens=4",
         "--warmup_requests=1", "--json"},
        "", &out);
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(*rc, 0) << out;
    EXPECT_THAT(out, HasSubstr("\"requests\": {\"OK\": 6}")) << out;
    EXPECT_THAT(out, HasSubstr("\"ttft_seconds\": {\"p50\": ")) << out;
  }
}

TEST_F(GenerateTest, TheLoadGeneratorSaysWhenNoGatewayServes) {
  std::string out;
  auto rc = testing::RunCommand(
      {testing::RunfilePath("tools/loadgen/loadgen"),
       absl::StrCat("--address=127.0.0.1:", testing::FreePort()),
       "--wait_ready_seconds=0", "--requests=1"},
      "", &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("is not serving: UNAVAILABLE")) << out;
}

TEST_F(GenerateTest, TheGatewayBenchmarkTimesBothPaths) {
  std::string out;
  auto rc = testing::RunCommand(
      {testing::RunfilePath("tools/bench_gateway/bench_gateway"),
       "--gateway=" + stack_->gateway().address(),
       "--workers=" + stack_->workers()[0].address(), "--requests=4",
       "--warmup_requests=1"},
      "", &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("4 sequential requests per path"));
  for (const char* row : {"| end to end, through the gateway |",
                          "| end to end, worker directly |",
                          "| end to end, gateway minus worker (paired) |",
                          "| first token, gateway minus worker (paired) |",
                          "Gateway added latency: p50 "}) {
    EXPECT_THAT(out, HasSubstr(row));
  }
  // A worker that is not there is a clear failure, not a table.
  rc = testing::RunCommand(
      {testing::RunfilePath("tools/bench_gateway/bench_gateway"),
       "--gateway=" + stack_->gateway().address(),
       absl::StrCat("--workers=127.0.0.1:", testing::FreePort()),
       "--requests=1", "--warmup_requests=0", "--wait_ready_seconds=1"},
      "", &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("the stack is not serving: UNAVAILABLE: worker "
                             "127.0.0.1:"));
}

TEST_F(GenerateTest, ASecondRequestOverTheSameDocumentIsServedFromTheStore) {
  std::string document;
  for (int i = 0; document.size() < 3000; ++i) {
    absl::StrAppend(&document, "Clause ", i, " binds the parties. ");
  }
  document.resize(3000);  // 11 full blocks of 256 tokens, byte tokenizer.
  v1::GenerateRequest request = TextRequest(document, 8);
  request.mutable_sampling()->set_temperature(0);
  Result cold = Generate(request);
  ASSERT_TRUE(cold.status.ok()) << cold.status.error_message();
  EXPECT_EQ(cold.last.usage().cached_tokens(), 0);
  // Offload runs behind the computation: ask again until every block is stored.
  Result warm;
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    warm = Generate(request);
    ASSERT_TRUE(warm.status.ok());
  } while (warm.last.usage().cached_tokens() < 2816 && absl::Now() < deadline);
  EXPECT_EQ(warm.last.usage().cached_tokens(), 2816);
  EXPECT_EQ(warm.tokens, cold.tokens);
}

// The value of an unlabelled sample `name` on a /metrics page, or -1.
double Sample(const std::string& page, const std::string& name) {
  size_t at = page.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + name.size() + 2));
}

// Many short requests, four at a time, one in five abandoned by its client
// after the first message: each ends OK (or CANCELLED, when abandoned) and the
// gateway keeps serving. Without the hold on the worker call in the gateway's
// relay (generate_call.cc), this aborted the gateway within a few hundred
// requests in 2 runs of 3.
TEST_F(GenerateTest, ManyShortRequestsEachEndCleanly) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  std::atomic<int> ok{0}, cancelled{0};
  std::vector<std::string> unexpected[kThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::GenerateRequest request =
            TextRequest(absl::StrCat("short ", t, " ", i), 1 + i % 3);
        grpc::Status status;
        if (i % 5 == 4) {
          grpc::ClientContext context;
          auto reader = stub_->Generate(&context, request);
          v1::GenerateResponse response;
          reader->Read(&response);
          context.TryCancel();
          status = reader->Finish();
        } else {
          status = Generate(request, absl::Seconds(60)).status;
        }
        if (status.ok()) {
          ++ok;
        } else if (status.error_code() == grpc::StatusCode::CANCELLED &&
                   i % 5 == 4) {
          ++cancelled;
        } else {
          unexpected[t].push_back(absl::StrCat("request ", t, "/", i, ": ",
                                               status.error_code(), " ",
                                               status.error_message()));
          if (unexpected[t].size() == 3) return;  // Enough to tell.
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::vector<std::string>& list : unexpected) {
    EXPECT_THAT(list, ::testing::IsEmpty());
  }
  EXPECT_EQ(ok + cancelled, kThreads * kPerThread);
  EXPECT_TRUE(
      Generate(TextRequest("still serving", 2), absl::Seconds(10)).status.ok());
}

TEST_F(GenerateTest, MetricsCountTheTrafficAndStayValid) {
  Result r = Generate(TextRequest("count me", 5));
  ASSERT_TRUE(r.status.ok());
  auto gateway = testing::HttpGet(stack_->gateway().metrics_port, "/metrics");
  auto worker = testing::HttpGet(stack_->workers()[0].metrics_port, "/metrics");
  ASSERT_TRUE(gateway.ok() && worker.ok());
  EXPECT_GE(Sample(*gateway, "longctx_generated_tokens_total"), 5);
  EXPECT_GE(Sample(*gateway, "longctx_time_to_first_token_seconds_count"), 1);
  EXPECT_THAT(*gateway, HasSubstr("longctx_requests_total{code=\"OK\"}"));
  EXPECT_GE(Sample(*worker, "longctx_decode_tokens_total"), 1);
  EXPECT_GE(Sample(*worker, "longctx_prefill_tokens_total"), 8);
  EXPECT_GT(Sample(*worker, "longctx_kv_blocks_capacity"), 0);
  for (const std::string* page : {&*gateway, &*worker}) {
    std::string output;
    auto rc =
        testing::RunCommand({"promtool", "check", "metrics"}, *page, &output);
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(*rc, 0) << output;
  }
}

}  // namespace
}  // namespace longctx
