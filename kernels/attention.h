// Flash-attention forward over a paged KV cache, with per-row log-sum-exp.
//
// For every query token i, head h (kv head h / G, G = num_heads /
// num_kv_heads, as Hugging Face's repeat_kv) and visible key j:
//
//   s_ij  = scale * q[i, h, :] . k[j, h / G, :]
//   lse_i = log(sum_j exp(s_ij))                         (natural log)
//   o_i   = sum_j exp(s_ij - lse_i) * v[j, h / G, :]
//
// Queries sit at absolute positions [q_start_pos, q_start_pos + n_q), keys at
// [kv.start_pos, kv.start_pos + kv.num_tokens). With `causal`, key j is
// visible to query i iff kv.start_pos + j <= q_start_pos + i; otherwise all
// keys are visible. A row that sees no key gets o = 0 and lse = -inf, which
// is what lse_merge.h expects for an empty partial result. Partial results
// over disjoint key ranges merge exactly with MergeAttention (lse_merge.h).
//
// The kernel is tiled (online softmax, no [n_q, n_kv] score matrix), skips key
// tiles that are wholly in a query tile's causal future, reads keys and values
// from the blocks in place (converting fp16 / bf16 a tile at a time), and runs
// on the calling thread's OpenMP team (threads.h): work items are (kv head,
// query tile) pairs, and when there are fewer items than threads (decode,
// short chunks) each item's keys are split across threads and the parts
// merged exactly. With compute kBf16 the tiles of Q, K, V and the softmax
// weights are kept in bf16, pairs of adjacent elements interleaved for the
// dot-product instruction. Memory is allocated once per call (per-thread
// scratch, and the parts of split items), never per tile. Thread-safe:
// concurrent calls share nothing.
#ifndef LONGCTX_KERNELS_ATTENTION_H_
#define LONGCTX_KERNELS_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace longctx::kernels {

// PagedKv is a read-only view of one layer's keys and values for a run of
// consecutive tokens, stored in blocks of `block_size` tokens. Token t of the
// view lives in block t / block_size at slot t % block_size; a block's K (and
// its V) is laid out [num_kv_heads][block_size][head_dim], rows contiguous.
// The view does not own the blocks.
struct PagedKv {
  // k_blocks[b] and v_blocks[b] point to the K and V of block b, for
  // b < ceil(num_tokens / block_size). Elements of type `dtype`.
  const void* const* k_blocks = nullptr;
  const void* const* v_blocks = nullptr;
  // kF16 (the KV cache default), kF32 or kBf16.
  DType dtype = DType::kF16;
  int block_size = 256;  // Tokens per block.
  int num_kv_heads = 0;
  int head_dim = 0;        // 1..256.
  int64_t num_tokens = 0;  // n_kv; 0 gives every row o = 0, lse = -inf.
  int64_t start_pos = 0;   // Absolute position of token 0 (kv_pos0).
};

// AttentionParams describes the queries.
struct AttentionParams {
  // Query heads; a positive multiple of kv.num_kv_heads.
  int num_heads = 0;
  // Absolute position of query row 0 (q_pos0).
  int64_t q_start_pos = 0;
  // Whether keys after a query's position are hidden. Default: true.
  bool causal = true;
  // Multiplier of q . k; 0 means 1 / sqrt(head_dim). Default: 0.
  float scale = 0.0f;
  // Type the products q . k and p . v are taken in (sums are always fp32):
  // kF32, or kBf16 (--compute_precision=bf16): q, k, v and the softmax
  // weights p rounded to bf16 and multiplied with AVX512_BF16 dot products,
  // as GPU flash attention does with its tensor cores. kBf16 applies to
  // query tiles (prefill), and to calls with at most 8 query rows (decode:
  // tokens x heads per kv head) over a bf16 cache with head_dim 64, 128 or
  // 256, which multiply the cache as stored; other decode calls stay in
  // fp32, as does every call on a CPU without AVX512_BF16 (or with
  // SetMaxCpuIsa below kAvx512Bf16). Default: kF32.
  DType compute = DType::kF32;
};

// FlashAttention computes attention of n_q query tokens over `kv`.
//
// q: fp32 [n_q, num_heads, head_dim]; token i's heads start at
//    q + i * q_stride (q_stride >= num_heads * head_dim).
// o: fp32, same shape, token i at o + i * o_stride; written for every row.
//    Must not overlap q.
// lse: fp32 [n_q, num_heads] contiguous (natural log), or null if unneeded.
//
// INVALID_ARGUMENT for inconsistent shapes (num_heads not a multiple of
// num_kv_heads, head_dim outside 1..256, non-positive block_size, short
// strides, null pointers where data is needed, compute kF16).
absl::Status FlashAttention(const float* q, int64_t n_q, int64_t q_stride,
                            const PagedKv& kv, const AttentionParams& params,
                            float* o, int64_t o_stride, float* lse);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_ATTENTION_H_
