// Context parallelism end to end: worker groups of P ranks (real processes on
// loopback, Gloo between them, formed through the gateway's rendezvous)
// serving the tiny model through the gateway.
#include <csignal>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "tests/testing/generate.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

using Result = testing::GenerateResult;
using testing::Generate;

// A prompt of `n` token ids (not a multiple of the block size of 16).
v1::GenerateRequest GreedyRequest(int n, int max_new) {
  v1::GenerateRequest request;
  for (int i = 0; i < n; ++i) {
    request.mutable_token_ids()->add_ids((i * 37 + 11) % 250 + 3);
  }
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_new_tokens(max_new);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_logprobs()->set_enabled(true);
  request.mutable_logprobs()->set_top_logprobs(5);
  return request;
}

// The same tokens with the same log-probabilities (and alternatives) within
// 1e-4.
void ExpectSameLogprobs(const Result& a, const Result& b) {
  ASSERT_EQ(a.logprobs.size(), a.tokens.size());
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
  for (size_t i = 0; i < a.logprobs.size(); ++i) {
    const v1::TokenLogprob& x = a.logprobs[i];
    const v1::TokenLogprob& y = b.logprobs[i];
    EXPECT_EQ(x.token_id(), y.token_id()) << "token " << i;
    EXPECT_NEAR(x.logprob(), y.logprob(), 1e-4) << "token " << i;
    ASSERT_EQ(x.top_size(), 5);
    ASSERT_EQ(y.top_size(), 5);
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(x.top(k).token_id(), y.top(k).token_id()) << "token " << i;
      EXPECT_NEAR(x.top(k).logprob(), y.top(k).logprob(), 1e-4)
          << "token " << i << " alternative " << k;
    }
  }
}

testing::StackOptions GroupOptions(int P) {
  testing::StackOptions options;
  options.num_workers = P;
  options.group_size = P;
  // Small blocks and chunks: every rank holds several blocks of the prompt,
  // and prefill runs in chunks (ring and pass-Q steps both happen).
  options.worker_flags = {"--block_size=16", "--prefill_chunk_tokens=96",
                          "--group_form_timeout_seconds=5"};
  return options;
}

TEST(GroupTest, EveryGroupSizeGivesTheTokensOfOneRank) {
  std::map<int, Result> reference;  // By prompt length, from P=1.
  for (int P : {1, 2, 3, 4}) {
    testing::LocalStack stack;
    absl::Status status = stack.Start(GroupOptions(P));
    ASSERT_TRUE(status.ok()) << status;
    for (int n : {333, 21}) {
      Result r = Generate(stack.gateway().address(), GreedyRequest(n, 20),
                          absl::Seconds(120));
      ASSERT_TRUE(r.status.ok())
          << "P=" << P << ": " << r.status.error_message() << "\n"
          << stack.Logs();
      ASSERT_EQ(r.tokens.size(), 20u);
      if (P == 1) {
        reference[n] = r;
      } else {
        EXPECT_EQ(r.tokens, reference[n].tokens) << "P=" << P << " n=" << n;
        SCOPED_TRACE(absl::StrCat("P=", P, " n=", n));
        ExpectSameLogprobs(r, reference[n]);
      }
    }
  }
}

TEST(GroupTest, ALostRankFailsTheRequestAndTheGroupComesBack) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(GroupOptions(2));
  ASSERT_TRUE(status.ok()) << status;
  const std::string gateway = stack.gateway().address();
  Result before = Generate(gateway, GreedyRequest(200, 8), absl::Seconds(60));
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();

  // A long request; rank 1 is killed while it runs.
  Result during;
  std::thread client([&] {
    during = Generate(gateway, GreedyRequest(300, 4000), absl::Seconds(60));
  });
  absl::SleepFor(absl::Seconds(1));
  stack.worker_process(1).Signal(SIGKILL);
  ASSERT_TRUE(stack.worker_process(1).Wait(absl::Seconds(10)).ok());
  client.join();
  EXPECT_EQ(during.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << during.status.error_message() << "\n"
      << stack.Logs();
  EXPECT_LT(during.elapsed, absl::Seconds(60));
  // While the group is incomplete, its rank 0 is NOT_SERVING, and so is the
  // gateway, which has no other group.
  EXPECT_TRUE(testing::WaitForHealth(stack.workers()[0].address(),
                                     "NOT_SERVING", absl::Seconds(30))
                  .ok());
  EXPECT_TRUE(
      testing::WaitForHealth(gateway, "NOT_SERVING", absl::Seconds(30)).ok());

  // Back: once the group forms again, the same request gives the same tokens.
  status = stack.RestartWorker(1);
  ASSERT_TRUE(status.ok()) << status;
  Result after;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  do {
    after = Generate(gateway, GreedyRequest(200, 8), absl::Seconds(60));
    if (after.status.ok()) break;
    absl::SleepFor(absl::Milliseconds(500));
  } while (absl::Now() < give_up);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message() << "\n"
                                 << stack.Logs();
  EXPECT_EQ(after.tokens, before.tokens);
  for (const std::string& address :
       {stack.workers()[0].address(), stack.workers()[1].address(), gateway}) {
    EXPECT_EQ(testing::HealthStatus(address, "").value_or(""), "SERVING")
        << address;
  }
}

// The counter's value on a Prometheus page (0 when absent).
double CounterValue(const std::string& page, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return 0;
}

TEST(GroupTest, AGroupServesAPrefixHotFromItsRanksMemory) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(GroupOptions(2));
  ASSERT_TRUE(status.ok()) << status;
  const std::string gateway = stack.gateway().address();
  Result cold = Generate(gateway, GreedyRequest(333, 12), absl::Seconds(60));
  ASSERT_TRUE(cold.status.ok()) << cold.status.error_message();
  EXPECT_EQ(cold.last.usage().cached_tokens(), 0);
  // The 20 full blocks of 16 before the prompt's last token stay on the
  // ranks that computed them, and the next request reads them there.
  Result hot = Generate(gateway, GreedyRequest(333, 12), absl::Seconds(60));
  ASSERT_TRUE(hot.status.ok()) << hot.status.error_message();
  EXPECT_EQ(hot.last.usage().cached_tokens(), 320);
  EXPECT_EQ(hot.tokens, cold.tokens);
  ExpectSameLogprobs(hot, cold);
  auto page = testing::HttpGet(stack.workers()[0].metrics_port, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(CounterValue(*page, "longctx_prefix_cache_hit_tokens_total"), 320);
  EXPECT_EQ(CounterValue(*page, "longctx_restore_blocks_total"), 0);
  // A prompt that shares only the first 100 tokens reuses the 6 full blocks
  // of the shared part and gives the tokens of a cold computation.
  v1::GenerateRequest branch = GreedyRequest(333, 12);
  for (int i = 100; i < 333; ++i) branch.mutable_token_ids()->set_ids(i, 7);
  Result branched = Generate(gateway, branch, absl::Seconds(60));
  ASSERT_TRUE(branched.status.ok()) << branched.status.error_message();
  EXPECT_EQ(branched.last.usage().cached_tokens(), 96);
  testing::LocalStack single;
  testing::StackOptions one = GroupOptions(1);
  one.worker_flags.push_back("--prefix_cache=false");
  status = single.Start(one);
  ASSERT_TRUE(status.ok()) << status;
  Result reference =
      Generate(single.gateway().address(), branch, absl::Seconds(60));
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  EXPECT_EQ(reference.last.usage().cached_tokens(), 0);
  EXPECT_EQ(branched.tokens, reference.tokens);
  ExpectSameLogprobs(branched, reference);
}

TEST(GroupTest, AGroupRestoresItsBlocksFromTheStore) {
  testing::LocalStack stack;
  testing::StackOptions options = GroupOptions(2);
  // No prefix cache: the blocks can only come back from the store.
  options.worker_flags.push_back("--prefix_cache=false");
  absl::Status status = stack.Start(options);
  ASSERT_TRUE(status.ok()) << status;
  const std::string gateway = stack.gateway().address();
  Result cold = Generate(gateway, GreedyRequest(333, 12), absl::Seconds(60));
  ASSERT_TRUE(cold.status.ok()) << cold.status.error_message();
  EXPECT_EQ(cold.last.usage().cached_tokens(), 0);
  // Each rank stores the blocks it holds, behind the computation: the 20 full
  // blocks of 16 come back from the store (both ranks read theirs).
  Result warm;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    warm = Generate(gateway, GreedyRequest(333, 12), absl::Seconds(60));
    ASSERT_TRUE(warm.status.ok()) << warm.status.error_message();
  } while (warm.last.usage().cached_tokens() < 320 && absl::Now() < deadline);
  EXPECT_EQ(warm.last.usage().cached_tokens(), 320) << stack.Logs();
  EXPECT_EQ(warm.tokens, cold.tokens);
  ExpectSameLogprobs(warm, cold);
}

TEST(GroupTest, TheGatewaySpreadsRequestsOverSeveralGroups) {
  testing::StackOptions options = GroupOptions(2);
  options.num_workers = 4;  // Two groups of two ranks.
  testing::LocalStack stack;
  absl::Status status = stack.Start(options);
  ASSERT_TRUE(status.ok()) << status;
  std::vector<Result> results(6);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&, i] {
      results[i] = Generate(stack.gateway().address(),
                            GreedyRequest(150 + static_cast<int>(i), 30),
                            absl::Seconds(120));
    });
  }
  for (auto& t : clients) t.join();
  for (const Result& r : results) {
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  // Both leaders (ranks 0 and 2 of the list) computed prompts.
  for (int leader : {0, 2}) {
    auto page =
        testing::HttpGet(stack.workers()[leader].metrics_port, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_GT(CounterValue(*page, "longctx_prefill_tokens_total"), 0)
        << "group of worker " << leader << " ran nothing";
  }
}

TEST(GroupTest, OnlyRankZeroTakesRequests) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(GroupOptions(2));
  ASSERT_TRUE(status.ok()) << status;
  worker::v1::GenerateRequest request;
  request.add_prompt_token_ids(5);
  request.set_max_new_tokens(1);
  grpc::Status s =
      testing::WorkerGenerate(stack.workers()[1].address(), request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("rank 0"));
}

}  // namespace
}  // namespace longctx
