#include "kernels/gemm.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
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

TEST(ComputePrecisionTest, ParsesNames) {
  EXPECT_EQ(*ParseComputePrecision("fp32"), ComputePrecision::kFp32);
  EXPECT_EQ(*ParseComputePrecision("bf16"), ComputePrecision::kBf16);
  EXPECT_EQ(ParseComputePrecision("fp16").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace longctx::kernels
