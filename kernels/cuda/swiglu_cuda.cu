#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/swiglu_cuda.h"

namespace longctx::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Each element is read and written by one thread, so out may alias an input.
__global__ void SwiGluKernel(const float* gate, int64_t gate_stride,
                             const float* up, int64_t up_stride, int64_t rows,
                             int64_t dim, float* out, int64_t out_stride) {
  const int64_t total = rows * dim;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += stride) {
    const int64_t r = idx / dim;
    const int64_t i = idx - r * dim;
    const float g = gate[r * gate_stride + i];
    const float u = up[r * up_stride + i];
    out[r * out_stride + i] = g / (1.0f + expf(-g)) * u;
  }
}

}  // namespace

cudaError_t SwiGlu(const float* gate, int64_t gate_stride, const float* up,
                   int64_t up_stride, int64_t rows, int64_t dim, float* out,
                   int64_t out_stride, cudaStream_t stream) {
  if (rows < 0 || dim < 0 || gate_stride < dim || up_stride < dim ||
      out_stride < dim) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (gate == nullptr || up == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  SwiGluKernel<<<internal::GridFor(rows * dim, kThreads), kThreads, 0,
                 stream>>>(gate, gate_stride, up, up_stride, rows, dim, out,
                           out_stride);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
