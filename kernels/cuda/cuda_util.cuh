// Device helpers shared by the CUDA kernels: element loads that convert the
// storage types of kernels/dtype.h to fp32 (exactly, as the CPU kernels do),
// warp reductions, and launch-size helpers. Included only by .cu files.
#ifndef LONGCTX_KERNELS_CUDA_CUDA_UTIL_CUH_
#define LONGCTX_KERNELS_CUDA_CUDA_UTIL_CUH_

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda::internal {

// LoadF32 reads element i of an array of type T and converts it to fp32.
// fp16 and bf16 to fp32 are exact conversions.
template <DType T>
__device__ __forceinline__ float LoadF32(const void* base, size_t i);

template <>
__device__ __forceinline__ float LoadF32<DType::kF32>(const void* base,
                                                      size_t i) {
  return static_cast<const float*>(base)[i];
}

template <>
__device__ __forceinline__ float LoadF32<DType::kF16>(const void* base,
                                                      size_t i) {
  return __half2float(
      __ushort_as_half(static_cast<const unsigned short*>(base)[i]));
}

template <>
__device__ __forceinline__ float LoadF32<DType::kBf16>(const void* base,
                                                       size_t i) {
  const uint32_t bits =
      static_cast<uint32_t>(static_cast<const unsigned short*>(base)[i]) << 16;
  return __uint_as_float(bits);
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// GridFor returns the number of blocks of `threads` threads for a grid-stride
// loop over `n` items: enough to cover n, at most `cap` (kernels loop over
// the rest).
inline unsigned GridFor(int64_t n, int threads, int64_t cap = 65535) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

}  // namespace longctx::kernels::cuda::internal

#endif  // LONGCTX_KERNELS_CUDA_CUDA_UTIL_CUH_
