#include "kernels/cpu_isa.h"

#include <atomic>

namespace longctx::kernels {
namespace {

std::atomic<int> max_isa{static_cast<int>(CpuIsa::kAvx512)};

bool CpuSupportsAvx512() {
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 state.
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
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
  static const bool has_f16c =
      __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
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
