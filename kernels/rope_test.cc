#include "kernels/rope.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace longctx::kernels {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Hugging Face's inverse frequencies, written out from
// _compute_default_rope_parameters and _compute_llama3_parameters, in double.
std::vector<double> ReferenceInvFreq(const RopeParams& p) {
  std::vector<double> f(p.head_dim / 2);
  for (int i = 0; i < p.head_dim / 2; ++i) {
    f[i] = 1.0 / std::pow(p.theta, double(2 * i) / p.head_dim);
    if (!p.use_llama3_scaling) continue;
    const Llama3RopeScaling& s = p.llama3_scaling;
    const double low_freq_wavelen =
        s.original_max_position_embeddings / double(s.low_freq_factor);
    const double high_freq_wavelen =
        s.original_max_position_embeddings / double(s.high_freq_factor);
    const double wavelen = 2 * kPi / f[i];
    const double scaled = wavelen > low_freq_wavelen ? f[i] / s.factor : f[i];
    const double smooth =
        (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
        (s.high_freq_factor - s.low_freq_factor);
    const double smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const bool medium =
        !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f[i] = medium ? smoothed : scaled;
  }
  return f;
}

// inv_freq is rounded once to fp32: relative error <= 2^-24 ~ 6e-8.
constexpr double kInvFreqTolerance = 1e-7;

TEST(RopeTest, InvFreqMatchesHuggingFaceDefault) {
  RopeParams params;
  params.head_dim = 128;
  params.theta = 10000.0;
  std::vector<float> f(64);
  ASSERT_TRUE(ComputeRopeInvFreq(params, f.data()).ok());
  const std::vector<double> want = ReferenceInvFreq(params);
  for (int i = 0; i < 64; ++i) {
    EXPECT_NEAR(f[i], want[i], kInvFreqTolerance * want[i]) << i;
  }
  EXPECT_EQ(f[0], 1.0f);
}

TEST(RopeTest, InvFreqMatchesHuggingFaceLlama3Scaling) {
  RopeParams params;  // Llama 3.1 8B.
  params.head_dim = 128;
  params.theta = 500000.0;
  params.use_llama3_scaling = true;
  std::vector<float> f(64);
  ASSERT_TRUE(ComputeRopeInvFreq(params, f.data()).ok());
  const std::vector<double> want = ReferenceInvFreq(params);
  int low = 0, medium = 0, high = 0;
  for (int i = 0; i < 64; ++i) {
    EXPECT_NEAR(f[i], want[i], kInvFreqTolerance * want[i]) << i;
    const double unscaled = 1.0 / std::pow(500000.0, 2.0 * i / 128);
    if (std::fabs(f[i] - unscaled) <= 1e-7 * unscaled) {
      ++high;
    } else if (std::fabs(f[i] - unscaled / 8) <= 1e-7 * unscaled) {
      ++low;
    } else {
      ++medium;
    }
  }
  // All three bands of the scaling are exercised.
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);
}

TEST(RopeTest, RejectsBadParams) {
  float f[64];
  RopeParams params;
  params.head_dim = 63;
  EXPECT_EQ(ComputeRopeInvFreq(params, f).code(),
            absl::StatusCode::kInvalidArgument);
  params.head_dim = 64;
  params.theta = 0;
  EXPECT_EQ(ComputeRopeInvFreq(params, f).code(),
            absl::StatusCode::kInvalidArgument);
  params.theta = 10000;
  params.use_llama3_scaling = true;
  params.llama3_scaling.high_freq_factor = 1.0f;  // == low_freq_factor.
  EXPECT_EQ(ComputeRopeInvFreq(params, f).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RopeTest, RotatesLikeRotateHalfInDouble) {
  const int head_dim = 72, q_heads = 3, k_heads = 1;
  const int64_t n = 11, q_stride = q_heads * head_dim + 5,
                k_stride = k_heads * head_dim;
  RopeParams params;
  params.head_dim = head_dim;
  std::vector<float> inv_freq(head_dim / 2);
  ASSERT_TRUE(ComputeRopeInvFreq(params, inv_freq.data()).ok());
  const std::vector<int32_t> positions = {
      0, 1, 2, 17, 1000, 4095, 65537, 1000000, 5, 2000000, 123456789};
  std::vector<float> q = Random(n * q_stride, 1), k = Random(n * k_stride, 2);
  const std::vector<float> q0 = q, k0 = k;
  ApplyRope(inv_freq.data(), head_dim, positions.data(), n, q.data(), q_stride,
            q_heads, k.data(), k_stride, k_heads);
  // The kernel's own fp32 inv_freq is the contract; angles in double. Each
  // output is two fp32 products and a sum of values <= 1: error ~3 ulp.
  auto check = [&](const std::vector<float>& before,
                   const std::vector<float>& after, int64_t stride, int heads) {
    const int half = head_dim / 2;
    for (int64_t t = 0; t < n; ++t) {
      for (int h = 0; h < heads; ++h) {
        const float* x = before.data() + t * stride + h * head_dim;
        const float* y = after.data() + t * stride + h * head_dim;
        for (int i = 0; i < half; ++i) {
          const double a = double(positions[t]) * double(inv_freq[i]);
          const double y1 = x[i] * std::cos(a) - x[i + half] * std::sin(a);
          const double y2 = x[i + half] * std::cos(a) + x[i] * std::sin(a);
          ASSERT_NEAR(y[i], y1, 5e-7) << t << " " << h << " " << i;
          ASSERT_NEAR(y[i + half], y2, 5e-7) << t << " " << h << " " << i;
        }
      }
      for (int64_t x = heads * head_dim; x < stride; ++x) {
        ASSERT_EQ(after[t * stride + x], before[t * stride + x]);
      }
    }
  };
  check(q0, q, q_stride, q_heads);
  check(k0, k, k_stride, k_heads);
}

TEST(RopeTest, ScoresDependOnlyOnRelativePosition) {
  const int head_dim = 64;
  RopeParams params;
  params.head_dim = head_dim;
  params.theta = 500000.0;
  std::vector<float> inv_freq(head_dim / 2);
  ASSERT_TRUE(ComputeRopeInvFreq(params, inv_freq.data()).ok());
  const std::vector<float> q = Random(head_dim, 3), k = Random(head_dim, 4);
  auto score = [&](int32_t q_pos, int32_t k_pos) {
    std::vector<float> qr = q, kr = k;
    ApplyRope(inv_freq.data(), head_dim, &q_pos, 1, qr.data(), head_dim, 1,
              nullptr, 0, 0);
    ApplyRope(inv_freq.data(), head_dim, &k_pos, 1, kr.data(), head_dim, 1,
              nullptr, 0, 0);
    double dot = 0;
    for (int i = 0; i < head_dim; ++i) dot += double(qr[i]) * kr[i];
    return dot;
  };
  const double near = score(10, 3);
  EXPECT_NEAR(score(700010, 700003), near, 1e-5);
  EXPECT_NEAR(score(1000007, 1000000), near, 1e-5);
}

}  // namespace
}  // namespace longctx::kernels
