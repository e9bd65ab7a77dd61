#include "kernels/dtype.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// Reference value of an F16 bit pattern, computed in double.
double F16Value(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0x1f) {
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// Reference rounding of a finite float to a format with `mantissa_bits`
// explicit bits, minimum normal exponent `min_exponent` and largest finite
// value `max_finite`: round to nearest, ties to even, in double.
double RoundReference(float f, int mantissa_bits, int min_exponent,
                      double max_finite) {
  const double x = std::fabs(static_cast<double>(f));
  if (x == 0) return f;
  int exponent = std::ilogb(x);
  if (exponent < min_exponent) exponent = min_exponent;
  const double quantum = std::ldexp(1.0, exponent - mantissa_bits);
  double rounded = std::nearbyint(x / quantum) * quantum;  // Ties to even.
  // Halfway past the largest finite value rounds to infinity.
  const double overflow =
      max_finite + std::ldexp(1.0, std::ilogb(max_finite) - mantissa_bits - 1);
  if (x >= overflow) rounded = std::numeric_limits<double>::infinity();
  return std::signbit(f) ? -rounded : rounded;
}

std::vector<float> InterestingFloats() {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               65504.0f,
                               65519.99f,
                               65520.0f,
                               -65520.0f,
                               1e10f,
                               6.1035156e-05f,  // Smallest normal F16.
                               5.9604645e-08f,  // Smallest subnormal F16.
                               2.9802322e-08f,  // Half of it: ties to 0.
                               2.9802326e-08f,  // Just above: rounds up.
                               8.940697e-08f,   // 1.5 ulp: ties to even (2).
                               1e-30f,
                               std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  for (int i = 0; i < 20000; ++i) {
    values.push_back(FromBits(any_bits(rng) & 0xff7fffffu));  // Finite.
    values.push_back(std::exp2(exponent(rng)) * ((i & 1) ? 1.0f : -1.0f));
  }
  // Exact ties between neighbouring F16 values.
  for (int h = 0; h < 0x7bff; h += 37) {
    const double mid = (F16Value(h) + F16Value(h + 1)) / 2;
    values.push_back(static_cast<float>(mid));
  }
  return values;
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBf16), 2u);
  EXPECT_STREQ(DTypeName(DType::kBf16), "bf16");
}

TEST(DTypeTest, EveryF16ValueConvertsExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const double expected = F16Value(static_cast<uint16_t>(h));
    const float got = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << h;
      EXPECT_EQ(std::signbit(got), std::signbit(expected)) << h;
      // Round trip is the identity on non-NaN values.
      EXPECT_EQ(F32ToF16(got), h) << h;
    }
  }
}

TEST(DTypeTest, F32ToF16RoundsToNearestEven) {
  for (float f : InterestingFloats()) {
    const double expected = RoundReference(f, 10, -14, 65504.0);
    const uint16_t h = F32ToF16(f);
    EXPECT_EQ(F16Value(h), expected) << f;
    EXPECT_EQ(std::signbit(F16Value(h)), std::signbit(expected)) << f;
  }
}

TEST(DTypeTest, NanStaysNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float snan = FromBits(0x7f800001u);  // Payload only in low bits.
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(nan))));
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(snan))));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(nan))));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(snan))));
}

TEST(DTypeTest, F32ToBf16RoundsToNearestEven) {
  const double max_bf16 = Bf16ToF32(0x7f7f);
  for (float f : InterestingFloats()) {
    const double expected = RoundReference(f, 7, -126, max_bf16);
    const float got = Bf16ToF32(F32ToBf16(f));
    EXPECT_EQ(static_cast<double>(got), expected) << f;
  }
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float value = Bf16ToF32(static_cast<uint16_t>(b));
    EXPECT_EQ(Bits(value), b << 16);
    if (!std::isnan(value)) {
      EXPECT_EQ(F32ToBf16(value), b);
    }
  }
}

// The bulk conversions must equal the scalar ones bit for bit, on every code
// path and for lengths that leave vector tails.
class BulkConversionTest : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override { SetMaxCpuIsa(GetParam()); }
  void TearDown() override { SetMaxCpuIsa(CpuIsa::kBestCpuIsa); }
};

TEST_P(BulkConversionTest, MatchesScalar) {
  std::vector<float> values = InterestingFloats();
  values.push_back(std::numeric_limits<float>::quiet_NaN());
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{15},
                    int64_t{33}, static_cast<int64_t>(values.size())}) {
    std::vector<uint16_t> half(n), bf(n);
    std::vector<float> back(n);
    ConvertF32ToF16(values.data(), half.data(), n);
    ConvertF32ToBf16(values.data(), bf.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(half[i], F32ToF16(values[i])) << values[i];
      ASSERT_EQ(bf[i], F32ToBf16(values[i])) << values[i];
    }
    ConvertF16ToF32(half.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(Bits(back[i]), Bits(F16ToF32(half[i])));
    }
    ConvertToF32(DType::kBf16, bf.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(Bits(back[i]), Bits(Bf16ToF32(bf[i])));
    }
  }
}

TEST_P(BulkConversionTest, GenericConversionsDispatchOnType) {
  const float src[5] = {1.5f, -2.25f, 3.0e-3f, 1e5f, 0.1f};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBf16}) {
    uint16_t storage[10];
    float back[5];
    ConvertFromF32(src, dtype, storage, 5);
    ConvertToF32(dtype, storage, back, 5);
    for (int i = 0; i < 5; ++i) {
      const float expected = dtype == DType::kF32 ? src[i]
                             : dtype == DType::kF16
                                 ? F16ToF32(F32ToF16(src[i]))
                                 : Bf16ToF32(F32ToBf16(src[i]));
      EXPECT_EQ(Bits(back[i]), Bits(expected)) << DTypeName(dtype);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, BulkConversionTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx512),
                         [](const auto& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace longctx::kernels
