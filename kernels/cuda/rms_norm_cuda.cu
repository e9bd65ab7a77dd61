#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/rms_norm_cuda.h"

namespace longctx::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Rows go to blocks (grid-stride): each thread accumulates the squares of a
// strided slice of the row (adding delta first when there is one), the block
// reduces them through shared memory, then every thread scales the same slice.
// A thread touches the same elements in both passes, so y may alias x, or
// delta when adding.
__global__ void NormKernel(float* x, int64_t x_stride, const float* delta,
                           int64_t delta_stride, const float* weight,
                           int64_t rows, int64_t dim, float eps, float* y,
                           int64_t y_stride) {
  __shared__ float partial[kThreads / 32];
  __shared__ float total;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    float* xr = x + row * x_stride;
    float* yr = y + row * y_stride;
    float sum = 0.0f;
    if (delta != nullptr) {
      const float* dr = delta + row * delta_stride;
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i] + dr[i];
        xr[i] = v;
        sum += v * v;
      }
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i];
        sum += v * v;
      }
    }
    sum = internal::WarpSum(sum);
    if (lane == 0) partial[warp] = sum;
    __syncthreads();
    if (warp == 0) {
      sum = lane < kThreads / 32 ? partial[lane] : 0.0f;
      sum = internal::WarpSum(sum);
      if (lane == 0) total = sum;
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      yr[i] = xr[i] * scale * weight[i];
    }
    __syncthreads();  // `partial` and `total` are reused by the next row.
  }
}

}  // namespace

cudaError_t RmsNorm(const float* x, int64_t x_stride, const float* weight,
                    int64_t rows, int64_t dim, float eps, float* y,
                    int64_t y_stride, cudaStream_t stream) {
  if (rows < 0 || dim < 1 || x_stride < dim || y_stride < dim) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  if (x == nullptr || weight == nullptr || y == nullptr) {
    return cudaErrorInvalidValue;
  }
  // With delta == null the kernel only reads x.
  NormKernel<<<internal::GridFor(rows, 1), kThreads, 0, stream>>>(
      const_cast<float*>(x), x_stride, nullptr, 0, weight, rows, dim, eps, y,
      y_stride);
  return cudaGetLastError();
}

cudaError_t AddRmsNorm(float* residual, int64_t residual_stride,
                       const float* delta, int64_t delta_stride,
                       const float* weight, int64_t rows, int64_t dim,
                       float eps, float* y, int64_t y_stride,
                       cudaStream_t stream) {
  if (rows < 0 || dim < 1 || residual_stride < dim || delta_stride < dim ||
      y_stride < dim) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  if (residual == nullptr || delta == nullptr || weight == nullptr ||
      y == nullptr || y == residual) {
    return cudaErrorInvalidValue;
  }
  NormKernel<<<internal::GridFor(rows, 1), kThreads, 0, stream>>>(
      residual, residual_stride, delta, delta_stride, weight, rows, dim, eps, y,
      y_stride);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
