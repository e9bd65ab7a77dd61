#include "kernels/dtype.h"

#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

LONGCTX_TARGET_F16C void F16ToF32F16c(const uint16_t* src, float* dst,
                                      int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

LONGCTX_TARGET_F16C void F32ToF16F16c(const float* src, uint16_t* dst,
                                      int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

LONGCTX_TARGET_AVX512 void Bf16ToF32Avx512(const uint16_t* src, float* dst,
                                           int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i b =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m512i wide = _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16);
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(wide));
  }
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

LONGCTX_TARGET_AVX512 void F32ToBf16Avx512(const float* src, uint16_t* dst,
                                           int64_t n) {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i round_bias = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf_bits = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet_bit = _mm512_set1_epi32(0x400000);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i x = _mm512_loadu_si512(src + i);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
    __m512i rounded = _mm512_add_epi32(x, _mm512_add_epi32(round_bias, lsb));
    const __mmask16 is_nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf_bits);
    rounded =
        _mm512_mask_mov_epi32(rounded, is_nan, _mm512_or_si512(x, quiet_bit));
    const __m256i packed =
        _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), packed);
  }
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

}  // namespace

size_t DTypeSize(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBf16:
      return "bf16";
  }
  return "unknown";
}

void ConvertF16ToF32(const uint16_t* src, float* dst, int64_t n) {
  if (CpuHasF16c()) {
    F16ToF32F16c(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

void ConvertF32ToF16(const float* src, uint16_t* dst, int64_t n) {
  if (CpuHasF16c()) {
    F32ToF16F16c(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

void ConvertBf16ToF32(const uint16_t* src, float* dst, int64_t n) {
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    Bf16ToF32Avx512(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

void ConvertF32ToBf16(const float* src, uint16_t* dst, int64_t n) {
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    F32ToBf16Avx512(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

void ConvertToF32(DType src_dtype, const void* src, float* dst, int64_t n) {
  switch (src_dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      ConvertF16ToF32(static_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::kBf16:
      ConvertBf16ToF32(static_cast<const uint16_t*>(src), dst, n);
      return;
  }
}

void ConvertFromF32(const float* src, DType dst_dtype, void* dst, int64_t n) {
  switch (dst_dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      ConvertF32ToF16(src, static_cast<uint16_t*>(dst), n);
      return;
    case DType::kBf16:
      ConvertF32ToBf16(src, static_cast<uint16_t*>(dst), n);
      return;
  }
}

}  // namespace longctx::kernels
