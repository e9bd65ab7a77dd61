#include "kernels/rms_norm.h"

#include <cmath>
#include <cstdint>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

// When `delta` is non-null, adds it into x first. Returns sum of x^2.
LONGCTX_TARGET_AVX512 float SumSquaresAvx512(float* x, const float* delta,
                                             int64_t n) {
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = _mm512_loadu_ps(x + i);
    __m512 b = _mm512_loadu_ps(x + i + 16);
    if (delta != nullptr) {
      a = _mm512_add_ps(a, _mm512_loadu_ps(delta + i));
      b = _mm512_add_ps(b, _mm512_loadu_ps(delta + i + 16));
      _mm512_storeu_ps(x + i, a);
      _mm512_storeu_ps(x + i + 16, b);
    }
    acc0 = _mm512_fmadd_ps(a, a, acc0);
    acc1 = _mm512_fmadd_ps(b, b, acc1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    __m512 a = _mm512_maskz_loadu_ps(m, x + i);
    if (delta != nullptr) {
      a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, delta + i));
      _mm512_mask_storeu_ps(x + i, m, a);
    }
    acc0 = _mm512_fmadd_ps(a, a, acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

LONGCTX_TARGET_AVX512 void ScaleAvx512(const float* x, const float* weight,
                                       float scale, int64_t n, float* y) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s);
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + i)));
  }
}

float SumSquaresScalar(float* x, const float* delta, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (delta != nullptr) x[i] += delta[i];
    sum += static_cast<double>(x[i]) * x[i];
  }
  return static_cast<float>(sum);
}

void ScaleScalar(const float* x, const float* weight, float scale, int64_t n,
                 float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * weight[i];
}

// x is modified only when delta is non-null.
void NormRows(float* x, int64_t x_stride, const float* delta,
              int64_t delta_stride, const float* weight, int64_t rows,
              int64_t dim, float eps, float* y, int64_t y_stride) {
  const bool avx512 = ActiveCpuIsa() >= CpuIsa::kAvx512;
  internal::ParallelFor(rows, rows * dim, [&](int64_t r) {
    float* xr = x + r * x_stride;
    const float* dr = delta != nullptr ? delta + r * delta_stride : nullptr;
    float* yr = y + r * y_stride;
    const float sum =
        avx512 ? SumSquaresAvx512(xr, dr, dim) : SumSquaresScalar(xr, dr, dim);
    const float scale = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
    if (avx512) {
      ScaleAvx512(xr, weight, scale, dim, yr);
    } else {
      ScaleScalar(xr, weight, scale, dim, yr);
    }
  });
}

}  // namespace

void RmsNorm(const float* x, int64_t x_stride, const float* weight,
             int64_t rows, int64_t dim, float eps, float* y, int64_t y_stride) {
  // With delta == null, NormRows only reads x.
  NormRows(const_cast<float*>(x), x_stride, nullptr, 0, weight, rows, dim, eps,
           y, y_stride);
}

void AddRmsNorm(float* residual, int64_t residual_stride, const float* delta,
                int64_t delta_stride, const float* weight, int64_t rows,
                int64_t dim, float eps, float* y, int64_t y_stride) {
  NormRows(residual, residual_stride, delta, delta_stride, weight, rows, dim,
           eps, y, y_stride);
}

}  // namespace longctx::kernels
