// Flash-attention forward over a paged KV cache on the GPU, with per-row
// log-sum-exp: the contract of kernels/attention.h, on device memory.
//
// For every query token i, head h (kv head h / G, G = num_heads /
// num_kv_heads) and visible key j:
//
//   s_ij  = scale * q[i, h, :] . k[j, h / G, :]
//   lse_i = log(sum_j exp(s_ij))                         (natural log)
//   o_i   = sum_j exp(s_ij - lse_i) * v[j, h / G, :]
//
// Queries sit at absolute positions [q_start_pos, q_start_pos + n_q), keys at
// [kv.start_pos, kv.start_pos + kv.num_tokens). With `causal`, key j is
// visible to query i iff kv.start_pos + j <= q_start_pos + i; otherwise all
// keys are visible. A row that sees no key gets o = 0 and lse = -inf, so
// partial results over disjoint key ranges merge exactly with
// MergeAttention (lse_merge_cuda.h).
//
// One thread block computes a tile of (query token, query head of the group)
// rows of one kv head: Q, K, V and score tiles live in shared memory, the
// softmax is online (running maximum and sum per row, in log2 units), K and V
// are read from the blocks in place and converted from fp16 / bf16 to fp32
// a tile at a time, and key tiles wholly in the tile's causal future are never
// loaded. Accumulation is fp32. This header needs only the CUDA runtime and
// kernels/dtype.h (std-only).
#ifndef LONGCTX_KERNELS_CUDA_ATTENTION_CUDA_H_
#define LONGCTX_KERNELS_CUDA_ATTENTION_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda {

// PagedKv is the device-memory counterpart of kernels::PagedKv: one layer's
// keys and values for a run of consecutive tokens, in blocks of `block_size`
// tokens. Token t lives in block t / block_size at slot t % block_size; a
// block's K (and its V) is laid out [num_kv_heads][block_size][head_dim].
struct PagedKv {
  // Device arrays of device pointers (block tables): k_blocks[b] and
  // v_blocks[b] point to the K and V of block b, for b < ceil(num_tokens /
  // block_size). Elements of type `dtype`.
  const void* const* k_blocks = nullptr;
  const void* const* v_blocks = nullptr;
  DType dtype = DType::kF16;
  int block_size = 256;  // Tokens per block.
  int num_kv_heads = 0;
  int head_dim = 0;        // 1..256.
  int64_t num_tokens = 0;  // n_kv; 0 gives every row o = 0, lse = -inf.
  int64_t start_pos = 0;   // Absolute position of token 0.
};

// AttentionParams describes the queries, as kernels::AttentionParams.
struct AttentionParams {
  int num_heads = 0;        // A positive multiple of kv.num_kv_heads.
  int64_t q_start_pos = 0;  // Absolute position of query row 0.
  bool causal = true;       // Whether keys after a query's position are hidden.
  float scale = 0.0f;       // Multiplier of q . k; 0 means 1 / sqrt(head_dim).
};

// FlashAttention computes attention of n_q query tokens over `kv`, enqueued on
// `stream`. All pointers are device memory.
//
// q: fp32 [n_q, num_heads, head_dim]; token i's heads start at q + i * q_stride
//    (q_stride >= num_heads * head_dim).
// o: fp32, same shape, token i at o + i * o_stride; written for every row.
//    Must not overlap q.
// lse: fp32 [n_q, num_heads] contiguous (natural log), or null if unneeded.
//
// Returns cudaErrorInvalidValue, launching nothing, for inconsistent shapes
// (num_heads not a multiple of num_kv_heads, head_dim outside 1..256,
// non-positive block_size, short strides, more than 2^31 - 1 keys, null
// pointers where data is needed); otherwise the launch's status.
cudaError_t FlashAttention(const float* q, int64_t n_q, int64_t q_stride,
                           const PagedKv& kv, const AttentionParams& params,
                           float* o, int64_t o_stride, float* lse,
                           cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_ATTENTION_CUDA_H_
