#include "kernels/sampling.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

double ReferenceLse(const std::vector<float>& logits) {
  double max = -INFINITY;
  for (float l : logits) {
    if (!std::isnan(l)) max = std::max(max, double(l));
  }
  double sum = 0;
  for (float l : logits) {
    if (!std::isnan(l)) sum += std::exp(l - max);
  }
  return max + std::log(sum);
}

std::vector<float> RandomLogits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Draws `draws` tokens (steps 0..draws-1) and returns their frequencies.
std::vector<double> Frequencies(const std::vector<float>& logits,
                                const SamplingParams& params, int draws) {
  std::vector<double> freq(logits.size());
  for (int step = 0; step < draws; ++step) {
    absl::StatusOr<TokenLogprob> t = Sample(logits, params, step);
    EXPECT_TRUE(t.ok());
    if (t.ok()) freq[t->token] += 1.0 / draws;
  }
  return freq;
}

// Expected frequencies: softmax(logits / T) restricted to `allowed`.
std::vector<double> Expected(const std::vector<float>& logits, double t,
                             const std::vector<bool>& allowed) {
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (allowed[i]) total += p[i] = std::exp(logits[i] / t);
  }
  for (double& x : p) x /= total;
  return p;
}

// 20000 draws: a frequency's standard error is <= sqrt(0.25 / 20000) =
// 0.0035; 0.015 is over 4 standard errors, so a correct sampler fails with
// probability < 1e-4 per comparison (and the seeds are fixed anyway).
constexpr int kDraws = 20000;
constexpr double kFrequencyTolerance = 0.015;

class SamplingTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override { SetMaxCpuIsa(GetParam()); }
  void TearDown() override { SetMaxCpuIsa(CpuIsa::kBestCpuIsa); }
};

TEST_P(SamplingTest, GreedyTakesLowestIdAmongMaxima) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, kNegInf};
  SamplingParams params;
  params.temperature = 0;
  absl::StatusOr<TokenLogprob> t = Sample(logits, params, 0);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, 1);
  EXPECT_NEAR(t->logprob, 3.0 - ReferenceLse(logits), 1e-6);
  params.temperature = 1;
  params.top_k = 1;  // Also greedy.
  EXPECT_EQ(Sample(logits, params, 9)->token, 1);
}

TEST_P(SamplingTest, SameSeedAndStepGiveSameToken) {
  const std::vector<float> logits = RandomLogits(1001, 1);
  SamplingParams params;
  params.seed = 1234;
  params.top_k = 50;
  params.top_p = 0.9f;
  std::vector<int32_t> first, again;
  for (int step = 0; step < 50; ++step) {
    first.push_back(Sample(logits, params, step)->token);
    again.push_back(Sample(logits, params, step)->token);
  }
  EXPECT_EQ(first, again);
  params.seed = 1235;
  std::vector<int32_t> other;
  for (int step = 0; step < 50; ++step) {
    other.push_back(Sample(logits, params, step)->token);
  }
  EXPECT_NE(first, other);
  // Steps of one seed are not all the same token.
  EXPECT_NE(std::count(first.begin(), first.end(), first[0]), 50);
}

TEST(SamplingIsaTest, DrawsDoNotDependOnTheInstructionSet) {
  const std::vector<float> logits = RandomLogits(5000, 6);
  SamplingParams params;
  params.seed = 99;
  params.temperature = 0.8f;
  for (float top_p : {1.0f, 0.95f}) {
    params.top_p = top_p;
    std::vector<int32_t> tokens[2];
    for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx512}) {
      SetMaxCpuIsa(isa);
      for (int step = 0; step < 100; ++step) {
        tokens[static_cast<int>(isa)].push_back(
            Sample(logits, params, step)->token);
      }
    }
    SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
    EXPECT_EQ(tokens[0], tokens[1]);
  }
}

TEST_P(SamplingTest, FollowsSoftmaxWithTemperature) {
  const std::vector<float> logits = {0.5f, 1.5f, -1.0f, 0.0f, 1.0f, kNegInf};
  const std::vector<bool> all(logits.size(), true);
  for (float t : {1.0f, 0.5f, 2.0f}) {
    SamplingParams params;
    params.temperature = t;
    params.seed = 7;
    const std::vector<double> got = Frequencies(logits, params, kDraws);
    const std::vector<double> want = Expected(logits, t, all);
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], kFrequencyTolerance) << t << " " << i;
    }
    EXPECT_EQ(got[5], 0.0);  // -inf is never drawn.
  }
}

TEST_P(SamplingTest, TopKKeepsOnlyTheKMostLikely) {
  const std::vector<float> logits = {0.5f, 1.5f, -1.0f, 0.0f, 1.0f, 0.9f};
  SamplingParams params;
  params.top_k = 3;
  params.seed = 8;
  const std::vector<double> got = Frequencies(logits, params, kDraws);
  const std::vector<double> want =
      Expected(logits, 1.0, {false, true, false, false, true, true});
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], kFrequencyTolerance) << i;
  }
}

TEST_P(SamplingTest, TopPKeepsTheSmallestNucleus) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: with top_p 0.7 the nucleus is the
  // first two (0.5 < 0.7 <= 0.8).
  const std::vector<float> logits = {std::log(0.3f), std::log(0.05f),
                                     std::log(0.5f), std::log(0.15f)};
  SamplingParams params;
  params.top_p = 0.7f;
  params.seed = 9;
  const std::vector<double> got = Frequencies(logits, params, kDraws);
  EXPECT_EQ(got[1], 0.0);
  EXPECT_EQ(got[3], 0.0);
  EXPECT_NEAR(got[2], 0.5 / 0.8, kFrequencyTolerance);
  // top_k first, then top_p over the renormalized top-k: with top_k = 2 the
  // candidates are 0.5/0.8 and 0.3/0.8; top_p 0.6 keeps only the first.
  params.top_k = 2;
  params.top_p = 0.6f;
  for (int step = 0; step < 200; ++step) {
    EXPECT_EQ(Sample(logits, params, step)->token, 2);
  }
}

TEST_P(SamplingTest, TopPOverALargeFlatVocabulary) {
  // 5000 equal logits: the nucleus of 0.9 is the 4500 lowest ids (ties go to
  // lower ids), more than the first partial sort covers.
  const std::vector<float> logits(5000, 0.25f);
  SamplingParams params;
  params.top_p = 0.9f;
  params.seed = 10;
  int32_t highest = 0;
  for (int step = 0; step < 300; ++step) {
    highest = std::max(highest, Sample(logits, params, step)->token);
  }
  EXPECT_LT(highest, 4500);
  EXPECT_GT(highest, 4000);
}

TEST_P(SamplingTest, LogprobIsOfTheUnmodifiedDistribution) {
  const std::vector<float> logits = RandomLogits(300, 2);
  SamplingParams params;
  params.temperature = 0.7f;
  params.top_k = 20;
  const double lse = ReferenceLse(logits);
  for (int step = 0; step < 20; ++step) {
    const TokenLogprob t = *Sample(logits, params, step);
    EXPECT_NEAR(t.logprob, logits[t.token] - lse, 1e-5);
  }
}

TEST_P(SamplingTest, NanCountsAsMinusInfinity) {
  const std::vector<float> logits = {std::nanf(""), 0.0f, std::nanf(""), 0.0f};
  SamplingParams params;
  params.seed = 3;
  for (int step = 0; step < 200; ++step) {
    const TokenLogprob t = *Sample(logits, params, step);
    EXPECT_TRUE(t.token == 1 || t.token == 3);
    EXPECT_NEAR(t.logprob, std::log(0.5), 1e-6);
  }
}

TEST_P(SamplingTest, RejectsBadInput) {
  SamplingParams params;
  EXPECT_EQ(Sample({}, params, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> masked = {kNegInf, kNegInf};
  EXPECT_EQ(Sample(masked, params, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> inf = {0.0f, INFINITY};
  EXPECT_EQ(Sample(inf, params, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> ok = {0.0f, 1.0f};
  for (SamplingParams bad :
       {SamplingParams{-1.0f, 0, 1.0f, 0}, SamplingParams{1.0f, -2, 1.0f, 0},
        SamplingParams{1.0f, 0, 0.0f, 0}, SamplingParams{1.0f, 0, 1.5f, 0}}) {
    EXPECT_EQ(Sample(ok, bad, 0).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(SamplingTest, TopLogprobsAreSortedWithTiesByIdAndExact) {
  std::vector<float> logits = RandomLogits(777, 4);
  logits[10] = logits[20] = 50.0f;  // A tie at the top.
  std::vector<TokenLogprob> top(5);
  TopLogprobs(logits, absl::MakeSpan(top));
  const double lse = ReferenceLse(logits);
  EXPECT_EQ(top[0].token, 10);
  EXPECT_EQ(top[1].token, 20);
  for (size_t i = 0; i < top.size(); ++i) {
    EXPECT_NEAR(top[i].logprob, logits[top[i].token] - lse, 1e-5);
    if (i > 0) {
      EXPECT_GE(logits[top[i - 1].token], logits[top[i].token]);
    }
  }
  int larger = 0;
  for (float l : logits) larger += l > logits[top[4].token];
  EXPECT_EQ(larger, 4);
}

TEST_P(SamplingTest, LogSumExpMatchesDouble) {
  for (int n : {1, 15, 17, 32000}) {
    std::vector<float> logits = RandomLogits(n, 5 + n);
    // Float rounding of the max shift, the exps (3e-7) and the sum.
    EXPECT_NEAR(LogSumExp(logits), ReferenceLse(logits),
                2e-6 * std::log(n + 1.0) + 1e-6)
        << n;
  }
  const std::vector<float> masked = {kNegInf, std::nanf("")};
  EXPECT_EQ(LogSumExp(masked), kNegInf);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, SamplingTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx512),
                         [](const auto& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace longctx::kernels
