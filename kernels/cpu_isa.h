// CPU instruction-set selection for the hand-vectorized kernels.
//
// Every kernel with hand-written AVX-512 code also has a portable scalar path;
// which one runs is decided at run time, per call, by ActiveCpuIsa(). The
// build does not assume any instruction set beyond x86-64 baseline.
#ifndef LONGCTX_KERNELS_CPU_ISA_H_
#define LONGCTX_KERNELS_CPU_ISA_H_

namespace longctx::kernels {

// CpuIsa orders the code paths from most portable to fastest.
enum class CpuIsa {
  // Plain C++; F16 conversions in software.
  kScalar = 0,
  // AVX-512 F/BW/VL/DQ with FMA and F16C (Skylake-SP, Zen 4 and later).
  kAvx512 = 1,
  // kAvx512 plus AVX512_BF16 (bf16 dot products: Cooper Lake, Sapphire
  // Rapids, Zen 4 and later).
  kAvx512Bf16 = 2,
  // The fastest path defined; SetMaxCpuIsa(kBestCpuIsa) lifts any cap.
  kBestCpuIsa = kAvx512Bf16,
};

// DetectedCpuIsa returns the best path this CPU (and OS) supports.
CpuIsa DetectedCpuIsa();

// ActiveCpuIsa returns min(DetectedCpuIsa(), the limit of SetMaxCpuIsa()).
// Thread-safe.
CpuIsa ActiveCpuIsa();

// CpuHasF16c reports hardware F16 <-> F32 conversion (F16C), honoring the
// SetMaxCpuIsa limit (kScalar disables it). Thread-safe.
bool CpuHasF16c();

// SetMaxCpuIsa caps the path kernels use from now on, process-wide, like
// oneDNN's dnnl::set_max_cpu_isa. Meant for tests and benchmarks that compare
// paths; calls already running are unaffected. Thread-safe.
void SetMaxCpuIsa(CpuIsa isa);

// CpuIsaName returns "scalar", "avx512" or "avx512_bf16".
const char* CpuIsaName(CpuIsa isa);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_CPU_ISA_H_
