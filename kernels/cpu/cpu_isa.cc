#include "kernels/cpu_isa.h"

#include <cpuid.h>

#include <atomic>

namespace longctx::kernels {
namespace {

// F16C is CPUID.1:ECX bit 29. (gcc's __builtin_cpu_supports knows "f16c", but
// clang before 16 does not, and the fuzz targets build with Debian's clang 14.)
bool CpuidHasF16c() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

std::atomic<int> max_isa{static_cast<int>(CpuIsa::kAvx512)};

bool CpuSupportsAvx512() {
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 state.
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
         CpuidHasF16c();
}

}  // namespace

CpuIsa DetectedCpuIsa() {
  static const CpuIsa detected =
      CpuSupportsAvx512() ? CpuIsa::kAvx512 : CpuIsa::kScalar;
  return detected;
}

CpuIsa ActiveCpuIsa() {
  const int limit = max_isa.load(std::memory_order_relaxed);
  const int detected = static_cast<int>(DetectedCpuIsa());
  return static_cast<CpuIsa>(limit < detected ? limit : detected);
}

bool CpuHasF16c() {
  static const bool has_f16c = __builtin_cpu_supports("avx") && CpuidHasF16c();
  return has_f16c && max_isa.load(std::memory_order_relaxed) >
                         static_cast<int>(CpuIsa::kScalar);
}

void SetMaxCpuIsa(CpuIsa isa) {
  max_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

}  // namespace longctx::kernels
