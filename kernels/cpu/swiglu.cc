#include "kernels/swiglu.h"

#include <cmath>
#include <cstdint>

#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

LONGCTX_TARGET_AVX512 void SwiGluRowAvx512(const float* gate, const float* up,
                                           int64_t n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    // exp(-g) overflows to inf for g < -88: silu is then -0, as it should be.
    const __m512 e = internal::ExpAvx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, u));
  }
}

void SwiGluRowScalar(const float* gate, const float* up, int64_t n,
                     float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

void SwiGlu(const float* gate, int64_t gate_stride, const float* up,
            int64_t up_stride, int64_t rows, int64_t dim, float* out,
            int64_t out_stride) {
  const bool avx512 = ActiveCpuIsa() >= CpuIsa::kAvx512;
  internal::ParallelFor(rows, rows * dim, [&](int64_t r) {
    if (avx512) {
      SwiGluRowAvx512(gate + r * gate_stride, up + r * up_stride, dim,
                      out + r * out_stride);
    } else {
      SwiGluRowScalar(gate + r * gate_stride, up + r * up_stride, dim,
                      out + r * out_stride);
    }
  });
}

}  // namespace longctx::kernels
