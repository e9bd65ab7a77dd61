// Element types of weights and caches, and conversions between them and fp32.
//
// F16 is IEEE 754 binary16; BF16 is the upper half of an IEEE binary32. Both
// are carried as raw uint16_t bits. Conversions to F32 are exact. Conversions
// from F32 round to nearest, ties to even; overflow gives infinity, NaN stays
// NaN (quieted), and F16 keeps subnormals.
#ifndef LONGCTX_KERNELS_DTYPE_H_
#define LONGCTX_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace longctx::kernels {

// DType is the element type of a tensor stored outside fp32 compute buffers.
enum class DType { kF32, kF16, kBf16 };

// DTypeSize returns the bytes of one element: 4, 2 or 2.
size_t DTypeSize(DType dtype);

// DTypeName returns "f32", "f16" or "bf16".
const char* DTypeName(DType dtype);

// Scalar conversions, for single values and for the reference code in tests.
// The bulk functions below are faster for arrays.

inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {  // Infinity or NaN.
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {  // Zero or subnormal: mantissa * 2^-24, exact.
    const float magnitude =
        static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &magnitude, sizeof(bits));
    bits |= sign;
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

inline uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) {  // NaN: keep the top payload bits, force quiet.
    return sign | 0x7e00u | static_cast<uint16_t>((x >> 13) & 0x3ffu);
  }
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf.
  if (x >= 0x38800000u) {                       // Normal in F16.
    const uint32_t round = 0xfffu + ((x >> 13) & 1u);
    return sign | static_cast<uint16_t>((x - (112u << 23) + round) >> 13);
  }
  // Subnormal in F16: adding 0.5 puts the value's bits on the grid of 2^-24
  // steps, so the FPU's own round-to-nearest-even does the rounding.
  float magnitude;
  std::memcpy(&magnitude, &x, sizeof(magnitude));
  const float shifted = magnitude + 0.5f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return sign | static_cast<uint16_t>(bits - 0x3f000000u);
}

inline float Bf16ToF32(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: force quiet.
    return static_cast<uint16_t>((x >> 16) | 0x40u);
  }
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// Bulk conversions of n elements. src and dst must not overlap. F16 uses F16C
// or AVX-512 when the CPU has them (see cpu_isa.h). Thread-safe;
// single-threaded.
void ConvertF16ToF32(const uint16_t* src, float* dst, int64_t n);
void ConvertF32ToF16(const float* src, uint16_t* dst, int64_t n);
void ConvertBf16ToF32(const uint16_t* src, float* dst, int64_t n);
void ConvertF32ToBf16(const float* src, uint16_t* dst, int64_t n);

// ConvertToF32 converts n elements of type src_dtype to fp32.
void ConvertToF32(DType src_dtype, const void* src, float* dst, int64_t n);

// ConvertFromF32 converts n fp32 elements to dst_dtype.
void ConvertFromF32(const float* src, DType dst_dtype, void* dst, int64_t n);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_DTYPE_H_
