// Helpers for the AVX-512 code paths of the CPU kernels (internal to kernels/).
//
// Functions that use AVX-512 carry LONGCTX_TARGET_AVX512 so that the library
// builds without -march flags; callers must check ActiveCpuIsa() first.
#ifndef LONGCTX_KERNELS_CPU_AVX512_UTIL_H_
#define LONGCTX_KERNELS_CPU_AVX512_UTIL_H_

#include <immintrin.h>

// GCC 12 flags the deliberately undefined vectors inside its own AVX-512
// intrinsics (_mm512_reduce_*_ps and others) as uninitialized once they are
// inlined (GCC bug 105593, fixed in GCC 13). The files that include this
// header use those intrinsics, so the false positives are silenced here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define LONGCTX_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
// AVX-512 plus AVX512_BF16; callers check ActiveCpuIsa() >= kAvx512Bf16.
#define LONGCTX_TARGET_AVX512_BF16 \
  __attribute__((                  \
      target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma,avx512bf16")))
#define LONGCTX_TARGET_F16C __attribute__((target("avx,f16c")))

namespace longctx::kernels::internal {

// Exp2Avx512 returns 2^x per lane with a relative error below 3e-7; -inf
// (and anything below -200) gives exactly 0, x >= 128 gives +inf.
LONGCTX_TARGET_AVX512 inline __m512 Exp2Avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-200.0f)),
                    _mm512_set1_ps(128.0f));
  const __m512 n =
      _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);  // In [-0.5, 0.5].
  // 2^f = e^(f ln 2): Taylor terms (ln 2)^i / i! to degree 6 (error < 1e-7
  // on [-0.5, 0.5]).
  __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);  // p * 2^n, exact, 0 or inf at the ends.
}

// Exp2ForBf16Avx512 returns 2^x per lane for x <= 0 (-inf included, giving
// exactly 0) with a relative error below 1e-4: a degree-3 minimax polynomial
// where Exp2Avx512 uses degree 6, for values about to be rounded to bf16
// (relative step 2^-8), such as the probabilities of bf16 attention. Not for
// x > 0.
LONGCTX_TARGET_AVX512 inline __m512 Exp2ForBf16Avx512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-200.0f));
  const __m512 n =
      _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);  // In [-0.5, 0.5].
  // Minimax for relative error on [-0.5, 0.5] (Remez): 7.5e-5.
  __m512 p = _mm512_set1_ps(0.055171669074864f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.2426111221943308f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6932609854573362f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999280735404956f));
  return _mm512_scalef_ps(p, n);
}

// ExpAvx512 returns e^x per lane (see Exp2Avx512).
LONGCTX_TARGET_AVX512 inline __m512 ExpAvx512(__m512 x) {
  return Exp2Avx512(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)));
}

// TailMask returns a mask of the first n lanes, 0 <= n <= 16.
inline __mmask16 TailMask(int n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}

}  // namespace longctx::kernels::internal

#endif  // LONGCTX_KERNELS_CPU_AVX512_UTIL_H_
