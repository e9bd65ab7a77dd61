// Exact merge of partial attention results over disjoint key ranges.
//
// If (o_a, lse_a) is attention over key set A and (o_b, lse_b) over a disjoint
// key set B (as FlashAttention returns them), then attention over A ∪ B is
//
//   lse = log(exp(lse_a) + exp(lse_b))
//   o   = exp(lse_a - lse) * o_a + exp(lse_b - lse) * o_b
//
// computed without overflow. A row with lse = -inf is an empty partial (it saw
// no keys) and contributes nothing; merging two empty rows gives o = 0,
// lse = -inf. Merging is commutative and associative up to fp32 rounding, so
// ring and split-KV partials can be merged in any order.
#ifndef LONGCTX_KERNELS_LSE_MERGE_H_
#define LONGCTX_KERNELS_LSE_MERGE_H_

#include <cstdint>

namespace longctx::kernels {

// MergeAttention folds partial b into partial a, in place.
//
// o_a, o_b: fp32 [n_q, num_heads, head_dim], token i's heads at
//   o + i * stride (stride >= num_heads * head_dim).
// lse_a, lse_b: fp32 [n_q, num_heads] contiguous, natural log; finite or -inf.
// b must not overlap a. Thread-safe; uses the calling thread's OpenMP team
// for large inputs.
void MergeAttention(float* o_a, int64_t o_a_stride, float* lse_a,
                    const float* o_b, int64_t o_b_stride, const float* lse_b,
                    int64_t n_q, int num_heads, int head_dim);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_LSE_MERGE_H_
