#include "kernels/rms_norm.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Relative tolerance. The AVX-512 path sums squares in 32 fp32 lanes, each
// lane adding at most ceil(dim / 32) positive terms, so the sum is off by at
// most ~(dim / 32) * 2^-24 relative (7.6e-6 at dim 4099, far less in
// practice); 1/sqrt halves that and three roundings follow. 1e-5 covers the
// worst case; a wrong mean, eps or weight index is off by far more.
constexpr double kRelTolerance = 1e-5;

void ExpectNormalized(const float* x, int64_t x_stride, const float* weight,
                      int64_t rows, int64_t dim, float eps, const float* y,
                      int64_t y_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) {
      sum += double(x[r * x_stride + i]) * x[r * x_stride + i];
    }
    const double scale = 1.0 / std::sqrt(sum / dim + eps);
    for (int64_t i = 0; i < dim; ++i) {
      const double want = x[r * x_stride + i] * scale * weight[i];
      ASSERT_NEAR(y[r * y_stride + i], want,
                  kRelTolerance * std::fabs(want) + 1e-30)
          << "row " << r << " element " << i;
    }
  }
}

class RmsNormTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override { SetMaxCpuIsa(GetParam()); }
  void TearDown() override { SetMaxCpuIsa(CpuIsa::kBestCpuIsa); }
};

TEST_P(RmsNormTest, MatchesDoubleReference) {
  const float eps = 1e-5f;
  for (int64_t dim : {1, 7, 33, 1000, 4099}) {
    for (int64_t rows : {1, 3, 40}) {
      const int64_t x_stride = dim + 3, y_stride = dim + 5;
      const std::vector<float> x = Random(rows * x_stride, 1, 4.0f);
      const std::vector<float> w = Random(dim, 2);
      std::vector<float> y(rows * y_stride, 99.0f);
      RmsNorm(x.data(), x_stride, w.data(), rows, dim, eps, y.data(), y_stride);
      ExpectNormalized(x.data(), x_stride, w.data(), rows, dim, eps, y.data(),
                       y_stride);
      EXPECT_EQ(y[dim], 99.0f);  // Row padding untouched.
    }
  }
}

TEST_P(RmsNormTest, EpsDominatesTinyRows) {
  const std::vector<float> x(16, 0.0f), w(16, 1.0f);
  std::vector<float> y(16, 5.0f);
  RmsNorm(x.data(), 16, w.data(), 1, 16, 1e-6f, y.data(), 16);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST_P(RmsNormTest, InPlace) {
  const int64_t rows = 5, dim = 77;
  std::vector<float> x = Random(rows * dim, 3);
  const std::vector<float> original = x;
  const std::vector<float> w = Random(dim, 4);
  RmsNorm(x.data(), dim, w.data(), rows, dim, 1e-6f, x.data(), dim);
  ExpectNormalized(original.data(), dim, w.data(), rows, dim, 1e-6f, x.data(),
                   dim);
}

TEST_P(RmsNormTest, AddRmsNormUpdatesResidualAndNormalizesSum) {
  const int64_t rows = 9, dim = 515;
  std::vector<float> residual = Random(rows * dim, 5);
  const std::vector<float> before = residual;
  std::vector<float> delta = Random(rows * (dim + 1), 6);
  const std::vector<float> delta_copy = delta;
  const std::vector<float> w = Random(dim, 7);
  std::vector<float> y(rows * dim);
  AddRmsNorm(residual.data(), dim, delta.data(), dim + 1, w.data(), rows, dim,
             1e-5f, y.data(), dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      ASSERT_EQ(residual[r * dim + i],
                before[r * dim + i] + delta_copy[r * (dim + 1) + i]);
    }
  }
  ExpectNormalized(residual.data(), dim, w.data(), rows, dim, 1e-5f, y.data(),
                   dim);
  // Output into delta's own storage.
  std::vector<float> residual2 = before;
  AddRmsNorm(residual2.data(), dim, delta.data(), dim + 1, w.data(), rows, dim,
             1e-5f, delta.data(), dim + 1);
  EXPECT_EQ(residual2, residual);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      ASSERT_EQ(delta[r * (dim + 1) + i], y[r * dim + i]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, RmsNormTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx512),
                         [](const auto& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace longctx::kernels
