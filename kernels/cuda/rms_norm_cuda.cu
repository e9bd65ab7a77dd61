#include "kernels/cuda/rms_norm_cuda.h"

namespace longctx::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row: each thread accumulates a strided slice of squares, the block
// reduces them through shared memory, then every thread scales its slice.
__global__ void RmsNormKernel(const float* __restrict__ x,
                              const float* __restrict__ weight,
                              float* __restrict__ y, int dim, float eps) {
  const size_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* yr = y + row * dim;
  float sum = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += xr[i] * xr[i];
  __shared__ float partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    sum += __shfl_down_sync(0xffffffffu, sum, offset);
  }
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
    for (int offset = 16; offset > 0; offset /= 2) {
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    }
    if (threadIdx.x == 0) partial[0] = sum;
  }
  __syncthreads();
  const float scale = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    yr[i] = xr[i] * scale * weight[i];
  }
}

}  // namespace

cudaError_t RmsNorm(const float* x, const float* weight, float* y, int rows,
                    int dim, float eps, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaErrorInvalidValue;
  RmsNormKernel<<<rows, kThreads, 0, stream>>>(x, weight, y, dim, eps);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
