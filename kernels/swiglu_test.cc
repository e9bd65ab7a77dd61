#include "kernels/swiglu.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

double Reference(double g, double u) { return g / (1 + std::exp(-g)) * u; }

// exp is a polynomial with 3e-7 relative error (AVX-512) or libm's (scalar);
// then an add, a divide and a multiply round, each 6e-8. 1e-6 relative
// covers both paths.
constexpr double kRelTolerance = 1e-6;

class SwiGluTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override { SetMaxCpuIsa(GetParam()); }
  void TearDown() override { SetMaxCpuIsa(CpuIsa::kBestCpuIsa); }
};

TEST_P(SwiGluTest, MatchesDoubleReferenceWithStrides) {
  for (int64_t dim : {1, 15, 17, 1000}) {
    const int64_t rows = 7;
    std::vector<float> gate = Random(rows * (dim + 1), 1, 12.0f);
    gate[0] = 100.0f;
    if (dim > 1) gate[1] = -100.0f;  // silu is -0 in fp32 here.
    const std::vector<float> up = Random(rows * (dim + 2), 2, 3.0f);
    std::vector<float> out(rows * (dim + 3), 42.0f);
    SwiGlu(gate.data(), dim + 1, up.data(), dim + 2, rows, dim, out.data(),
           dim + 3);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < dim; ++i) {
        const double want =
            Reference(gate[r * (dim + 1) + i], up[r * (dim + 2) + i]);
        ASSERT_NEAR(out[r * (dim + 3) + i], want,
                    kRelTolerance * std::fabs(want) + 1e-37)
            << r << " " << i;
      }
      for (int64_t i = dim; i < dim + 3; ++i) {
        ASSERT_EQ(out[r * (dim + 3) + i], 42.0f);
      }
    }
  }
}

TEST_P(SwiGluTest, FusedGateUpInPlace) {
  const int64_t rows = 5, dim = 37;
  std::vector<float> gate_up = Random(rows * 2 * dim, 3, 6.0f);
  const std::vector<float> before = gate_up;
  SwiGluFused(gate_up.data(), rows, dim, gate_up.data(), 2 * dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      const double want =
          Reference(before[r * 2 * dim + i], before[r * 2 * dim + dim + i]);
      ASSERT_NEAR(gate_up[r * 2 * dim + i], want,
                  kRelTolerance * std::fabs(want) + 1e-37);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, SwiGluTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx512),
                         [](const auto& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace longctx::kernels
