#include "kernels/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"

namespace longctx::kernels {
namespace {

struct Problem {
  int64_t m, n, k, x_stride, y_stride;
};

std::vector<float> RandomFloats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = dist(rng);
  return v;
}

// Weight storage of one dtype, plus the exact fp32 values it holds.
struct Weight {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Weight MakeWeight(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  const std::vector<float> raw = RandomFloats(n * k, seed);
  Weight w;
  w.bytes.resize(raw.size() * DTypeSize(dtype));
  ConvertFromF32(raw.data(), dtype, w.bytes.data(), n * k);
  w.values.resize(raw.size());
  ConvertToF32(dtype, w.bytes.data(), w.values.data(), n * k);
  return w;
}

// Checks y against a double-precision product of x and w. When `bf16` the
// reference rounds x and w to bf16 first, as the kernel is specified to.
// Tolerance: |error| <= 1e-5 * sum_l |x_l w_l| (+1e-6 absolute). The kernel
// accumulates K products in fp32 (relative rounding 6e-8 per step; oneDNN's
// blocked sums grow it far less than K times), so 1e-5 holds for K in the
// thousands while a wrong element, order or rounding mode breaks it.
void ExpectMatchesReference(const std::vector<float>& x,
                            const std::vector<float>& w, const float* bias,
                            const std::vector<float>& y, const Problem& p,
                            bool bf16) {
  auto round = [bf16](float v) {
    return bf16 ? static_cast<double>(Bf16ToF32(F32ToBf16(v)))
                : static_cast<double>(v);
  };
  int bad = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double sum = bias != nullptr ? bias[j] : 0.0;
      double magnitude = bias != nullptr ? std::fabs(bias[j]) : 0.0;
      for (int64_t l = 0; l < p.k; ++l) {
        const double product =
            round(x[i * p.x_stride + l]) * round(w[j * p.k + l]);
        sum += product;
        magnitude += std::fabs(product);
      }
      const double got = y[i * p.y_stride + j];
      if (!(std::fabs(got - sum) <= 1e-5 * magnitude + 1e-6) && ++bad < 10) {
        ADD_FAILURE() << "y[" << i << ", " << j << "] = " << got
                      << ", expected " << sum;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

class GemmTest
    : public ::testing::TestWithParam<std::tuple<ComputePrecision, DType>> {
 protected:
  void SetUp() override {
    if (precision() == ComputePrecision::kBf16 && !Bf16GemmSupported()) {
      GTEST_SKIP() << "no native bf16 on this CPU";
    }
  }
  ComputePrecision precision() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }
};

TEST_P(GemmTest, MatchesDoubleReferenceOnAwkwardShapes) {
  const Problem problems[] = {
      {1, 37, 19, 19, 37},      {5, 130, 67, 70, 131},
      {17, 65, 300, 301, 65},   {64, 200, 129, 129, 200},
      {133, 97, 255, 260, 100},
  };
  Gemm gemm;
  uint32_t seed = 1;
  for (const Problem& p : problems) {
    const Weight w = MakeWeight(dtype(), p.n, p.k, seed++);
    const std::vector<float> x = RandomFloats(p.m * p.x_stride, seed++);
    const std::vector<float> bias = RandomFloats(p.n, seed++);
    absl::StatusOr<PackedWeight> packed =
        PackedWeight::Create(w.bytes.data(), dtype(), p.n, p.k, precision());
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->n(), p.n);
    EXPECT_EQ(packed->k(), p.k);
    EXPECT_EQ(packed->precision(), precision());
    EXPECT_GE(packed->size_bytes(),
              static_cast<size_t>(p.n * p.k) *
                  (precision() == ComputePrecision::kBf16 ? 2 : 4));
    for (bool with_bias : {false, true}) {
      std::vector<float> y(p.m * p.y_stride, -7.0f);
      const float* b = with_bias ? bias.data() : nullptr;
      ASSERT_TRUE(
          gemm.Run(x.data(), p.m, p.x_stride, *packed, b, y.data(), p.y_stride)
              .ok());
      SCOPED_TRACE(testing::Message() << "m=" << p.m << " n=" << p.n
                                      << " k=" << p.k << " bias=" << with_bias);
      ExpectMatchesReference(x, w.values, b, y, p,
                             precision() == ComputePrecision::kBf16);
      // Padding between rows of y is left alone.
      for (int64_t i = 0; i < p.m; ++i) {
        for (int64_t j = p.n; j < p.y_stride; ++j) {
          ASSERT_EQ(y[i * p.y_stride + j], -7.0f);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllPrecisionsAndSources, GemmTest,
    ::testing::Combine(
        ::testing::Values(ComputePrecision::kFp32, ComputePrecision::kBf16),
        ::testing::Values(DType::kF32, DType::kF16, DType::kBf16)),
    [](const auto& info) {
      return std::string(ComputePrecisionName(std::get<0>(info.param))) +
             "_from_" + DTypeName(std::get<1>(info.param));
    });

TEST(GemmCacheTest, OnePrimitivePerShape) {
  const int64_t n = 33, k = 21;
  const Weight w = MakeWeight(DType::kF32, n, k, 3);
  absl::StatusOr<PackedWeight> packed = PackedWeight::Create(
      w.bytes.data(), DType::kF32, n, k, ComputePrecision::kFp32);
  ASSERT_TRUE(packed.ok());
  Gemm gemm;
  std::vector<float> x = RandomFloats(10 * k, 4), y(10 * n);
  ASSERT_TRUE(gemm.Run(x.data(), 3, k, *packed, nullptr, y.data(), n).ok());
  ASSERT_TRUE(gemm.Run(x.data(), 3, k, *packed, nullptr, y.data(), n).ok());
  EXPECT_EQ(gemm.num_cached_primitives(), 1u);
  ASSERT_TRUE(gemm.Run(x.data(), 10, k, *packed, nullptr, y.data(), n).ok());
  EXPECT_EQ(gemm.num_cached_primitives(), 2u);
  ASSERT_TRUE(gemm.Run(x.data(), 0, k, *packed, nullptr, y.data(), n).ok());
  EXPECT_EQ(gemm.num_cached_primitives(), 2u);
}

TEST(GemmCacheTest, EvictsBeyondCapacityAndStaysCorrect) {
  const Problem base = {0, 40, 24, 24, 40};
  const Weight w = MakeWeight(DType::kF32, base.n, base.k, 5);
  absl::StatusOr<PackedWeight> packed = PackedWeight::Create(
      w.bytes.data(), DType::kF32, base.n, base.k, ComputePrecision::kFp32);
  ASSERT_TRUE(packed.ok());
  GemmOptions options;
  options.max_cached_primitives = 2;
  Gemm gemm(options);
  const std::vector<float> x = RandomFloats(9 * base.k, 6);
  for (int round = 0; round < 2; ++round) {
    for (int64_t m : {2, 5, 9}) {
      std::vector<float> y(m * base.n);
      ASSERT_TRUE(
          gemm.Run(x.data(), m, base.k, *packed, nullptr, y.data(), base.n)
              .ok());
      Problem p = base;
      p.m = m;
      ExpectMatchesReference(x, w.values, nullptr, y, p, false);
      EXPECT_LE(gemm.num_cached_primitives(), 2u);
    }
  }
}

TEST(GemmCacheTest, ConcurrentCallsFromManyThreads) {
  const int64_t n = 70, k = 45;
  const Weight w = MakeWeight(DType::kF32, n, k, 8);
  absl::StatusOr<PackedWeight> packed = PackedWeight::Create(
      w.bytes.data(), DType::kF32, n, k, ComputePrecision::kFp32);
  ASSERT_TRUE(packed.ok());
  Gemm gemm;
  const std::vector<float> x = RandomFloats(12 * k, 9);
  std::vector<std::vector<float>> outputs(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float>& y = outputs[t];
      y.assign(12 * n, 0.0f);
      for (int rep = 0; rep < 20; ++rep) {
        const int64_t m = 1 + (rep + t) % 12;
        if (!gemm.Run(x.data(), m, k, *packed, nullptr, y.data(), n).ok()) {
          y.clear();
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < 4; ++t) {
    const int64_t m = 1 + (19 + t) % 12;  // The last call's rows.
    ASSERT_FALSE(outputs[t].empty());
    outputs[t].resize(m * n);
    ExpectMatchesReference(x, w.values, nullptr, outputs[t], {m, n, k, k, n},
                           false);
  }
}

TEST(GemmErrorsTest, RejectsBadArguments) {
  const float data[6] = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(
      PackedWeight::Create(nullptr, DType::kF32, 2, 3, ComputePrecision::kFp32)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      PackedWeight::Create(data, DType::kF32, 0, 3, ComputePrecision::kFp32)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  if (!Bf16GemmSupported()) {
    EXPECT_EQ(
        PackedWeight::Create(data, DType::kF32, 2, 3, ComputePrecision::kBf16)
            .status()
            .code(),
        absl::StatusCode::kUnimplemented);
  }
  absl::StatusOr<PackedWeight> packed =
      PackedWeight::Create(data, DType::kF32, 2, 3, ComputePrecision::kFp32);
  ASSERT_TRUE(packed.ok());
  Gemm gemm;
  float y[4];
  EXPECT_EQ(gemm.Run(data, 2, 2, *packed, nullptr, y, 2).code(),
            absl::StatusCode::kInvalidArgument);  // x_stride < k.
  EXPECT_EQ(gemm.Run(data, 2, 3, *packed, nullptr, y, 1).code(),
            absl::StatusCode::kInvalidArgument);  // y_stride < n.
  EXPECT_EQ(gemm.Run(data, -1, 3, *packed, nullptr, y, 2).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(gemm.Run(data, 2, 3, *packed, nullptr, y, 2).ok());
  EXPECT_EQ(y[0], 1 * 1 + 2 * 2 + 3 * 3);
  EXPECT_EQ(y[1], 1 * 4 + 2 * 5 + 3 * 6);
  EXPECT_EQ(y[2], 4 * 1 + 5 * 2 + 6 * 3);
  EXPECT_EQ(y[3], 4 * 4 + 5 * 5 + 6 * 6);
}

// --- int8 weights ------------------------------------------------------------

// The per-row symmetric quantization the kernel is specified to do, in the
// same fp32 operations: returns the scale and writes q in [-127, 127].
float QuantizeRow(const float* v, int64_t k, std::vector<int32_t>& q) {
  float amax = 0.0f;
  for (int64_t l = 0; l < k; ++l) amax = std::max(amax, std::fabs(v[l]));
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  q.resize(k);
  for (int64_t l = 0; l < k; ++l) {
    q[l] = static_cast<int32_t>(
        std::nearbyint(std::min(127.0f, std::max(-127.0f, v[l] * inv))));
  }
  return amax / 127.0f;
}

// Checks y two ways. (1) Against the specified quantization done here:
// y = sx * sw * sum q_x q_w (+ bias), which the kernel computes exactly in
// int32, so only its fp32 scaling differs: 1e-5 relative. (2) Against the
// exact double product of x and w: each term's quantization error is
//   |x w - sx sw q_x q_w| = sx sw |q_x e_w + e_x q_w + e_x e_w|
//                        <= 0.5 sw |x| + 0.5 sx |w| + 0.75 sx sw
// (|e| <= 0.5 for rounding, |q_x| <= |x| / sx + 0.5), and the sum of those
// over k bounds y's error (plus 1e-5 relative for fp32).
void ExpectMatchesInt8Reference(const std::vector<float>& x,
                                const std::vector<float>& w, const float* bias,
                                const std::vector<float>& y, const Problem& p) {
  std::vector<std::vector<int32_t>> qw(p.n);
  std::vector<float> sw(p.n);
  for (int64_t j = 0; j < p.n; ++j)
    sw[j] = QuantizeRow(&w[j * p.k], p.k, qw[j]);
  std::vector<int32_t> qx;
  int bad = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    const float* xi = &x[i * p.x_stride];
    const double sx = QuantizeRow(xi, p.k, qx);
    for (int64_t j = 0; j < p.n; ++j) {
      const double b = bias != nullptr ? bias[j] : 0.0;
      int64_t qsum = 0;
      double exact = b, magnitude = std::fabs(b), bound = 0.0;
      for (int64_t l = 0; l < p.k; ++l) {
        qsum += int64_t{qx[l]} * qw[j][l];
        const double xv = xi[l], wv = w[j * p.k + l];
        exact += xv * wv;
        magnitude += std::fabs(xv * wv);
        bound += 0.5 * sw[j] * std::fabs(xv) + 0.5 * sx * std::fabs(wv) +
                 0.75 * sx * sw[j];
      }
      const double emulated = sx * sw[j] * static_cast<double>(qsum) + b;
      const double got = y[i * p.y_stride + j];
      if (!(std::fabs(got - emulated) <= 1e-5 * (magnitude + bound) + 1e-6) &&
          ++bad < 10) {
        ADD_FAILURE() << "y[" << i << ", " << j << "] = " << got
                      << ", the specified quantization gives " << emulated;
      }
      if (!(std::fabs(got - exact) <= bound + 1e-5 * magnitude + 1e-6) &&
          ++bad < 10) {
        ADD_FAILURE() << "y[" << i << ", " << j << "] = " << got << ", exact "
                      << exact << ", bound " << bound;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

// Param: source dtype; true to cap the CPU at scalar (no VNNI kernel: every
// size goes to oneDNN).
class GemmInt8Test : public ::testing::TestWithParam<std::tuple<DType, bool>> {
 protected:
  void SetUp() override {
    if (std::get<1>(GetParam())) SetMaxCpuIsa(CpuIsa::kScalar);
  }
  void TearDown() override { SetMaxCpuIsa(CpuIsa::kBestCpuIsa); }
  DType dtype() const { return std::get<0>(GetParam()); }
};

TEST_P(GemmInt8Test, MatchesQuantizedAndExactReferencesOnAwkwardShapes) {
  // m from 1 to 100 covers both the VNNI kernel (m <= kInt8GemvMaxRows) and
  // oneDNN; n and k off every block size.
  const Problem problems[] = {
      {1, 37, 53, 53, 37},       {3, 1, 1, 1, 1},
      {4, 130, 257, 260, 131},   {5, 65, 64, 64, 65},
      {17, 130, 257, 257, 130},  {100, 37, 53, 60, 40},
      {2, 200, 1000, 1000, 200},
  };
  Gemm gemm;
  uint32_t seed = 11;
  for (const Problem& p : problems) {
    const Weight w = MakeWeight(dtype(), p.n, p.k, seed++);
    const std::vector<float> x = RandomFloats(p.m * p.x_stride, seed++);
    const std::vector<float> bias = RandomFloats(p.n, seed++);
    absl::StatusOr<PackedWeight> packed =
        PackedWeight::Create(w.bytes.data(), dtype(), p.n, p.k,
                             ComputePrecision::kFp32, WeightDtype::kInt8);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_EQ(packed->weight_dtype(), WeightDtype::kInt8);
    EXPECT_GE(packed->size_bytes(), static_cast<size_t>(p.n * (p.k + 4)));
    for (bool with_bias : {false, true}) {
      std::vector<float> y(p.m * p.y_stride, -7.0f);
      const float* b = with_bias ? bias.data() : nullptr;
      ASSERT_TRUE(
          gemm.Run(x.data(), p.m, p.x_stride, *packed, b, y.data(), p.y_stride)
              .ok());
      SCOPED_TRACE(testing::Message() << "m=" << p.m << " n=" << p.n
                                      << " k=" << p.k << " bias=" << with_bias);
      ExpectMatchesInt8Reference(x, w.values, b, y, p);
      for (int64_t i = 0; i < p.m; ++i) {
        for (int64_t j = p.n; j < p.y_stride; ++j) {
          ASSERT_EQ(y[i * p.y_stride + j], -7.0f);
        }
      }
    }
  }
}

// Per-row scales: rows of W and of X spanning six orders of magnitude, each
// with one outlier 20x its other values. One scale per tensor would round
// the small rows to zero and break the per-row bound.
TEST_P(GemmInt8Test, RowsOfVeryDifferentMagnitudesKeepTheirPrecision) {
  const Problem p = {9, 70, 300, 300, 70};
  std::vector<float> w = RandomFloats(p.n * p.k, 21);
  std::vector<float> x = RandomFloats(p.m * p.k, 22);
  for (int64_t j = 0; j < p.n; ++j) {
    for (int64_t l = 0; l < p.k; ++l)
      w[j * p.k + l] *= std::pow(10.0f, j % 7 - 3);
    w[j * p.k + (j * 13) % p.k] *= 20.0f;
  }
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t l = 0; l < p.k; ++l)
      x[i * p.k + l] *= std::pow(10.0f, i % 5 - 2);
    x[i * p.k + (i * 31) % p.k] *= 20.0f;
  }
  std::vector<uint8_t> bytes(w.size() * DTypeSize(dtype()));
  ConvertFromF32(w.data(), dtype(), bytes.data(), p.n * p.k);
  ConvertToF32(dtype(), bytes.data(), w.data(), p.n * p.k);
  absl::StatusOr<PackedWeight> packed =
      PackedWeight::Create(bytes.data(), dtype(), p.n, p.k,
                           ComputePrecision::kBf16, WeightDtype::kInt8);
  ASSERT_TRUE(packed.ok()) << packed.status();
  Gemm gemm;
  for (int64_t m : {int64_t{1}, int64_t{4}, p.m}) {
    std::vector<float> y(m * p.n);
    ASSERT_TRUE(
        gemm.Run(x.data(), m, p.k, *packed, nullptr, y.data(), p.n).ok());
    Problem q = p;
    q.m = m;
    SCOPED_TRACE(testing::Message() << "m=" << m);
    ExpectMatchesInt8Reference(x, w, nullptr, y, q);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllSourcesBothPaths, GemmInt8Test,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16,
                                         DType::kBf16),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(DTypeName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_scalar" : "_best");
    });

TEST(GemmInt8Test, ZeroRowsGiveBias) {
  const int64_t n = 3, k = 5;
  const std::vector<float> w(n * k, 0.0f), x(2 * k, 0.0f);
  const float bias[3] = {1.5f, -2.0f, 0.25f};
  absl::StatusOr<PackedWeight> packed = PackedWeight::Create(
      w.data(), DType::kF32, n, k, ComputePrecision::kFp32, WeightDtype::kInt8);
  ASSERT_TRUE(packed.ok());
  Gemm gemm;
  for (int64_t m : {1, 2}) {
    std::vector<float> y(m * n, 9.0f);
    ASSERT_TRUE(gemm.Run(x.data(), m, k, *packed, bias, y.data(), n).ok());
    for (int64_t i = 0; i < m * n; ++i) EXPECT_EQ(y[i], bias[i % n]);
  }
}

TEST(GemmInt8Test, RejectsKBeyondInt32Range) {
  const int64_t k = 65537;
  const std::vector<float> w(k, 1.0f);
  EXPECT_EQ(PackedWeight::Create(w.data(), DType::kF32, 1, k,
                                 ComputePrecision::kFp32, WeightDtype::kInt8)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WeightDtypeTest, ParsesNames) {
  EXPECT_EQ(*ParseWeightDtype("auto"), WeightDtype::kAuto);
  EXPECT_EQ(*ParseWeightDtype("int8"), WeightDtype::kInt8);
  EXPECT_STREQ(WeightDtypeName(WeightDtype::kInt8), "int8");
  EXPECT_EQ(ParseWeightDtype("int4").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ComputePrecisionTest, ParsesNames) {
  EXPECT_EQ(*ParseComputePrecision("fp32"), ComputePrecision::kFp32);
  EXPECT_EQ(*ParseComputePrecision("bf16"), ComputePrecision::kBf16);
  EXPECT_EQ(ParseComputePrecision("fp16").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace longctx::kernels
