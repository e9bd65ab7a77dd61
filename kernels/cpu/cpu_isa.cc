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

// AVX512_BF16 is CPUID.(EAX=7,ECX=1):EAX bit 5; the OS support for the
// AVX-512 state is what CpuSupportsAvx512 checks.
bool CpuidHasAvx512Bf16() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) != 0 &&
         (eax & (1u << 5)) != 0;
}

std::atomic<int> max_isa{static_cast<int>(CpuIsa::kBestCpuIsa)};

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
  static const CpuIsa detected = !CpuSupportsAvx512()   ? CpuIsa::kScalar
                                 : CpuidHasAvx512Bf16() ? CpuIsa::kAvx512Bf16
                                                        : CpuIsa::kAvx512;
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
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
  }
  return "unknown";
}

}  // namespace longctx::kernels
