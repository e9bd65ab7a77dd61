// Exact merge of partial attention results over disjoint key ranges on the
// GPU: the contract of kernels/lse_merge.h, on device memory.
//
//   lse = log(exp(lse_a) + exp(lse_b))
//   o   = exp(lse_a - lse) * o_a + exp(lse_b - lse) * o_b
//
// computed without overflow. A row with lse = -inf is an empty partial and
// contributes nothing; merging two empty rows gives o = 0, lse = -inf.
#ifndef LONGCTX_KERNELS_CUDA_LSE_MERGE_CUDA_H_
#define LONGCTX_KERNELS_CUDA_LSE_MERGE_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::kernels::cuda {

// MergeAttention folds partial b into partial a, in place, enqueued on
// `stream`. All pointers are device memory.
//
// o_a, o_b: fp32 [n_q, num_heads, head_dim], token i's heads at
//   o + i * stride (stride >= num_heads * head_dim).
// lse_a, lse_b: fp32 [n_q, num_heads] contiguous, natural log; finite or -inf.
// b must not overlap a. cudaErrorInvalidValue for bad sizes or null pointers.
cudaError_t MergeAttention(float* o_a, int64_t o_a_stride, float* lse_a,
                           const float* o_b, int64_t o_b_stride,
                           const float* lse_b, int64_t n_q, int num_heads,
                           int head_dim, cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_LSE_MERGE_CUDA_H_
