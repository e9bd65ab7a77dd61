#include "kernels/lse_merge.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace longctx::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Partial {
  std::vector<float> o, lse;
};

Partial RandomPartial(int64_t n_q, int heads, int64_t stride, uint32_t seed,
                      float lse_spread) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Partial p;
  p.o.resize(n_q * stride);
  for (float& f : p.o) f = dist(rng);
  p.lse.resize(n_q * heads);
  for (float& f : p.lse) f = lse_spread * dist(rng);
  return p;
}

// Tolerance: the kernel does a handful of fp32 operations per element on
// values <= 1 (two exps, a divide, two products, a sum), ~1e-6 at worst.
constexpr double kTolerance = 2e-6;

TEST(LseMergeTest, MatchesDoubleReference) {
  const int64_t n_q = 13;
  const int heads = 3, d = 37;
  const int64_t stride_a = heads * d + 2, stride_b = heads * d;
  for (float spread : {1.0f, 30.0f, 200.0f}) {
    Partial a = RandomPartial(n_q, heads, stride_a, 1, spread);
    const Partial b = RandomPartial(n_q, heads, stride_b, 2, spread);
    a.lse[0] = kNegInf;  // a empty: result is b.
    a.lse[4] = kNegInf;
    const Partial a0 = a;
    MergeAttention(a.o.data(), stride_a, a.lse.data(), b.o.data(), stride_b,
                   b.lse.data(), n_q, heads, d);
    for (int64_t i = 0; i < n_q; ++i) {
      for (int h = 0; h < heads; ++h) {
        const double la = a0.lse[i * heads + h], lb = b.lse[i * heads + h];
        const double high = std::max(la, lb);
        const double wa = std::exp(la - high), wb = std::exp(lb - high);
        const double lse = high + std::log(wa + wb);
        EXPECT_NEAR(a.lse[i * heads + h], lse,
                    kTolerance * std::fabs(lse) + 1e-6);
        for (int x = 0; x < d; ++x) {
          const double want = (wa * a0.o[i * stride_a + h * d + x] +
                               wb * b.o[i * stride_b + h * d + x]) /
                              (wa + wb);
          ASSERT_NEAR(a.o[i * stride_a + h * d + x], want, kTolerance);
        }
      }
    }
  }
}

TEST(LseMergeTest, EmptyPartials) {
  const int d = 4;
  std::vector<float> oa = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> la = {kNegInf, 0.5f};
  const std::vector<float> ob = {9, 9, 9, 9, -1, -1, -1, -1};
  const std::vector<float> lb = {kNegInf, kNegInf};
  MergeAttention(oa.data(), 2 * d, la.data(), ob.data(), 2 * d, lb.data(), 1, 2,
                 d);
  // Both empty: o = 0, lse = -inf. Only b empty: a unchanged.
  EXPECT_EQ(oa, (std::vector<float>{0, 0, 0, 0, 5, 6, 7, 8}));
  EXPECT_EQ(la[0], kNegInf);
  EXPECT_EQ(la[1], 0.5f);
}

TEST(LseMergeTest, OrderDoesNotMatter) {
  const int64_t n_q = 4;
  const int heads = 2, d = 8, stride = heads * d;
  const Partial p[3] = {RandomPartial(n_q, heads, stride, 5, 5.0f),
                        RandomPartial(n_q, heads, stride, 6, 5.0f),
                        RandomPartial(n_q, heads, stride, 7, 5.0f)};
  auto merge = [&](int x, int y, int z) {
    Partial r = p[x];
    for (int other : {y, z}) {
      MergeAttention(r.o.data(), stride, r.lse.data(), p[other].o.data(),
                     stride, p[other].lse.data(), n_q, heads, d);
    }
    return r;
  };
  const Partial r1 = merge(0, 1, 2), r2 = merge(2, 0, 1);
  for (size_t i = 0; i < r1.o.size(); ++i) EXPECT_NEAR(r1.o[i], r2.o[i], 1e-6);
  for (size_t i = 0; i < r1.lse.size(); ++i) {
    EXPECT_NEAR(r1.lse[i], r2.lse[i], 1e-6);
  }
}

}  // namespace
}  // namespace longctx::kernels
