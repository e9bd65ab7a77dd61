#include "kernels/cpu/avx512_util.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

// Exp2Avx512, or Exp2ForBf16Avx512 when `for_bf16`, of 16 lanes.
LONGCTX_TARGET_AVX512 void Exp2(bool for_bf16, const float* x, float* y) {
  const __m512 v = _mm512_loadu_ps(x);
  _mm512_storeu_ps(
      y, for_bf16 ? internal::Exp2ForBf16Avx512(v) : internal::Exp2Avx512(v));
}

float Exp2Of(bool for_bf16, float x) {
  float in[16], out[16];
  std::fill(in, in + 16, x);
  Exp2(for_bf16, in, out);
  return out[0];
}

// Worst relative error against std::exp2 over x in [lo, hi] (a fine grid).
double WorstRelativeError(bool for_bf16, float lo, float hi) {
  double worst = 0;
  constexpr int kPoints = 160000;
  float x[16], y[16];
  for (int i = 0; i < kPoints; i += 16) {
    for (int k = 0; k < 16; ++k) {
      x[k] = lo + (hi - lo) * static_cast<float>(i + k) / (kPoints - 1);
    }
    Exp2(for_bf16, x, y);
    for (int k = 0; k < 16; ++k) {
      const double want = std::exp2(static_cast<double>(x[k]));
      if (want < 1e-30) continue;  // Flushed to 0 by design below -126.
      worst = std::max(worst, std::abs(y[k] - want) / want);
    }
  }
  return worst;
}

class Avx512UtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ActiveCpuIsa() < CpuIsa::kAvx512) GTEST_SKIP() << "no AVX-512";
  }
};

TEST_F(Avx512UtilTest, Exp2IsWithinItsStatedError) {
  EXPECT_LT(WorstRelativeError(false, -120.0f, 120.0f), 3e-7);
}

TEST_F(Avx512UtilTest, Exp2ForBf16IsWithinItsStatedErrorOnNonPositiveInputs) {
  const double worst = WorstRelativeError(true, -120.0f, 0.0f);
  EXPECT_LT(worst, 1e-4);
  // Well within half a bf16 step (2^-9), the rounding that follows it.
  EXPECT_LT(worst, std::exp2(-9.0) / 10);
}

TEST_F(Avx512UtilTest, Exp2ForBf16OfMinusInfinityAndVeryNegativeIsZero) {
  EXPECT_EQ(Exp2Of(true, -std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(Exp2Of(true, -1e30f), 0.0f);
  EXPECT_EQ(Exp2Of(true, -300.0f), 0.0f);
  EXPECT_NEAR(Exp2Of(true, 0.0f), 1.0f, 1e-4);
  EXPECT_EQ(Exp2Of(false, -std::numeric_limits<float>::infinity()), 0.0f);
}

}  // namespace
}  // namespace longctx::kernels
