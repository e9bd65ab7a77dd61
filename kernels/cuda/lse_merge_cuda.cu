#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/lse_merge_cuda.h"

namespace longctx::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

// One warp per (token, head) row: every lane reads both lse values, the lanes
// split the head's elements, lane 0 writes the merged lse.
__global__ void MergeKernel(float* o_a, int64_t o_a_stride, float* lse_a,
                            const float* o_b, int64_t o_b_stride,
                            const float* lse_b, int64_t rows, int num_heads,
                            int d) {
  const int lane = threadIdx.x % 32;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t row =
           static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
       row < rows; row += stride) {
    const int64_t i = row / num_heads;
    const int64_t h = row % num_heads;
    float* oa = o_a + i * o_a_stride + h * d;
    const float* ob = o_b + i * o_b_stride + h * d;
    const float la = lse_a[row];
    const float lb = lse_b[row];
    __syncwarp();  // Every lane has read lse_a[row] before lane 0 writes it.
    if (lb == -INFINITY) {  // b is empty: a stands (o = 0 if a is empty too).
      if (la == -INFINITY) {
        for (int x = lane; x < d; x += 32) oa[x] = 0.0f;
      }
      continue;
    }
    if (la == -INFINITY) {  // a is empty: take b.
      for (int x = lane; x < d; x += 32) oa[x] = ob[x];
      if (lane == 0) lse_a[row] = lb;
      continue;
    }
    // Weights relative to the larger lse: one is 1, the other in (0, 1].
    const float high = la > lb ? la : lb;
    const float wa = expf(la - high);
    const float wb = expf(lb - high);
    const float total = wa + wb;
    const float ca = wa / total;
    const float cb = wb / total;
    for (int x = lane; x < d; x += 32) oa[x] = ca * oa[x] + cb * ob[x];
    if (lane == 0) lse_a[row] = high + logf(total);
  }
}

}  // namespace

cudaError_t MergeAttention(float* o_a, int64_t o_a_stride, float* lse_a,
                           const float* o_b, int64_t o_b_stride,
                           const float* lse_b, int64_t n_q, int num_heads,
                           int head_dim, cudaStream_t stream) {
  if (n_q < 0 || num_heads <= 0 || head_dim <= 0 ||
      o_a_stride < static_cast<int64_t>(num_heads) * head_dim ||
      o_b_stride < static_cast<int64_t>(num_heads) * head_dim) {
    return cudaErrorInvalidValue;
  }
  if (n_q == 0) return cudaSuccess;
  if (o_a == nullptr || lse_a == nullptr || o_b == nullptr ||
      lse_b == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t rows = n_q * num_heads;
  MergeKernel<<<internal::GridFor(rows, kWarps), kThreads, 0, stream>>>(
      o_a, o_a_stride, lse_a, o_b, o_b_stride, lse_b, rows, num_heads,
      head_dim);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
