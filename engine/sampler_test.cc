#include "engine/sampler.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace longctx {
namespace {

std::vector<float> Logits() { return {0.5f, 3.0f, -1.0f, 2.0f, 0.0f}; }

// The log-softmax of `logits` at `i`, in double.
double LogSoftmax(const std::vector<float>& logits, int i) {
  double mx = -1e300, sum = 0;
  for (float v : logits) mx = std::max(mx, double(v));
  for (float v : logits) sum += std::exp(v - mx);
  return logits[i] - mx - std::log(sum);
}

TEST(SampleNextTokenTest, GreedyTakesTheLargestLogitWithItsLogprob) {
  const std::vector<float> logits = Logits();
  GenerateParams params;
  params.temperature = 0;
  params.top_logprobs = 3;
  TokenLogprob logprob;
  absl::StatusOr<int32_t> token =
      SampleNextToken(logits.data(), 5, params, 0, &logprob);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, 1);
  EXPECT_EQ(logprob.token, 1);
  EXPECT_NEAR(logprob.logprob, LogSoftmax(logits, 1), 1e-5);
  ASSERT_EQ(logprob.top.size(), 3u);
  EXPECT_EQ(logprob.top[0].token, 1);
  EXPECT_EQ(logprob.top[1].token, 3);
  EXPECT_EQ(logprob.top[2].token, 0);
  EXPECT_NEAR(logprob.top[1].logprob, LogSoftmax(logits, 3), 1e-5);
}

TEST(SampleNextTokenTest, TheSameSeedAndStepGiveTheSameToken) {
  const std::vector<float> logits = Logits();
  GenerateParams params;
  params.temperature = 1.5f;
  params.seed = 7;
  std::vector<int32_t> first, again;
  for (int step = 0; step < 50; ++step) {
    first.push_back(*SampleNextToken(logits.data(), 5, params, step, nullptr));
    again.push_back(*SampleNextToken(logits.data(), 5, params, step, nullptr));
  }
  EXPECT_EQ(first, again);
  // And the draws are not all the same token at this temperature.
  EXPECT_NE(std::count(first.begin(), first.end(), first[0]), 50);
}

TEST(SampleNextTokenTest, TopKOneIsGreedy) {
  const std::vector<float> logits = Logits();
  GenerateParams params;
  params.temperature = 2;
  params.top_k = 1;
  for (int step = 0; step < 20; ++step) {
    EXPECT_EQ(*SampleNextToken(logits.data(), 5, params, step, nullptr), 1);
  }
}

TEST(SampleNextTokenTest, LogitsWithNothingFiniteAreInvalid) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits(5, nan);
  GenerateParams params;
  absl::StatusOr<int32_t> token =
      SampleNextToken(logits.data(), 5, params, 0, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(token.status())) << token.status();
}

}  // namespace
}  // namespace longctx
