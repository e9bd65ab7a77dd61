#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/rope_cuda.h"

namespace longctx::kernels::cuda {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ void Rotate(float* x, int heads, int head_dim,
                                       int half, int i, float c, float s) {
  for (int h = 0; h < heads; ++h) {
    float* a = x + static_cast<int64_t>(h) * head_dim;
    const float xa = a[i];
    const float xb = a[i + half];
    a[i] = xa * c - xb * s;
    a[i + half] = xb * c + xa * s;
  }
}

// One thread per (token, frequency): the angle's sine and cosine are computed
// once and applied to that pair of elements of every head.
__global__ void RopeKernel(const float* inv_freq, int head_dim,
                           const int32_t* positions, int64_t n_tokens, float* q,
                           int64_t q_stride, int q_heads, float* k,
                           int64_t k_stride, int k_heads) {
  const int half = head_dim / 2;
  const int64_t total = n_tokens * half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += stride) {
    const int64_t t = idx / half;
    const int i = static_cast<int>(idx - t * half);
    const double angle =
        static_cast<double>(positions[t]) * static_cast<double>(inv_freq[i]);
    double sin_d;
    double cos_d;
    sincos(angle, &sin_d, &cos_d);
    const float c = static_cast<float>(cos_d);
    const float s = static_cast<float>(sin_d);
    Rotate(q + t * q_stride, q_heads, head_dim, half, i, c, s);
    if (k != nullptr)
      Rotate(k + t * k_stride, k_heads, head_dim, half, i, c, s);
  }
}

}  // namespace

cudaError_t ApplyRope(const float* inv_freq, int head_dim,
                      const int32_t* positions, int64_t n_tokens, float* q,
                      int64_t q_stride, int q_heads, float* k, int64_t k_stride,
                      int k_heads, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0 || n_tokens < 0 || q_heads < 0 ||
      q_stride < static_cast<int64_t>(q_heads) * head_dim ||
      (k != nullptr &&
       (k_heads < 0 || k_stride < static_cast<int64_t>(k_heads) * head_dim))) {
    return cudaErrorInvalidValue;
  }
  if (n_tokens == 0) return cudaSuccess;
  if (inv_freq == nullptr || positions == nullptr || q == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t total = n_tokens * (head_dim / 2);
  RopeKernel<<<internal::GridFor(total, kThreads), kThreads, 0, stream>>>(
      inv_freq, head_dim, positions, n_tokens, q, q_stride, q_heads, k,
      k_stride, k_heads);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
