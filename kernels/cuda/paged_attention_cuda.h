// Attention over the worker's paged KV pool on the GPU, for a whole batch of
// sequences in one launch: the GPU model's attention (the CPU model calls
// kernels/attention.h once per sequence).
//
// The pool is one device allocation of blocks; block id b starts at
// pool + b * block_bytes and holds, for every layer, K then V, each
// [num_kv_heads][block_size][head_dim] (engine/kv_block_pool.h).
// A sequence's keys 0..kv_len-1 live in the blocks its block table lists:
// key j in block table[j / block_size] at slot j % block_size.
//
// Both kernels compute, for each query row at absolute position p, head h
// (kv head h / G, G = heads / kv_heads) and visible keys j <= p, j < kv_len:
//
//   o = sum_j softmax_j(scale * q . k_j) v_j      (fp32 accumulation)
//
// and write o as out_dtype (kF32 or kBf16). A row that sees no key gets 0.
// This header needs only the CUDA runtime and kernels/dtype.h.
#ifndef LONGCTX_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_
#define LONGCTX_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda {

// PagedPool is one layer's view of the pool.
struct PagedPool {
  const void* pool = nullptr;  // Device memory.
  int64_t block_bytes = 0;     // Bytes of one block (every layer).
  int layer = 0;
  int block_size = 0;  // Tokens per block.
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF16;  // kF16 or kF32.
};

// PrefillSeq is one sequence of a prefill launch (device memory, one per
// sequence): its query rows are q_row .. q_row + n_q - 1 of the batch, at
// positions q_pos .. q_pos + n_q - 1; its keys are 0 .. kv_len - 1
// (kv_len >= q_pos + n_q: the queries' own keys are already in the pool) and
// its block table starts at block_tables + table_offset.
struct PrefillSeq {
  int32_t q_row = 0;
  int32_t n_q = 0;
  int32_t q_pos = 0;
  int32_t kv_len = 0;
  int32_t table_offset = 0;
};

// PrefillTile is one thread block's work: query rows row0 .. row0 + 63 of
// sequence `seq` (rows past its n_q are ignored).
struct PrefillTile {
  int32_t seq = 0;
  int32_t row0 = 0;
};

// kPrefillTileRows is the number of query rows of a PrefillTile.
constexpr int kPrefillTileRows = 64;

// PrefillAttentionSupported says whether PrefillAttention handles a head
// size and KV type: head_dim 64 or 128 with an fp16 pool.
bool PrefillAttentionSupported(int head_dim, DType kv_dtype);

// PrefillAttention runs causal attention with tensor cores (fp16 products,
// fp32 accumulation) for `num_tiles` tiles (at most 65535: 4 million query
// rows) over `heads` query heads.
// q16: fp16 queries, row r's head h at q16 + r * q_stride + h * head_dim.
// out: row r's head h at out + r * out_stride + h * head_dim. seqs, tiles and
// block_tables are device memory. scale 0 means 1 / sqrt(head_dim).
cudaError_t PrefillAttention(const void* q16, int64_t q_stride,
                             const PrefillSeq* seqs, const PrefillTile* tiles,
                             int num_tiles, const int32_t* block_tables,
                             const PagedPool& pool, int heads, float scale,
                             DType out_dtype, void* out, int64_t out_stride,
                             cudaStream_t stream);

// DecodeAttention computes one query row per entry (decode, or a short
// chunk's rows one by one), splitting each entry's keys over up to
// `max_splits` thread blocks per kv head (flash-decoding) so that a single
// long sequence still fills the GPU; the splits' partial results merge by
// log-sum-exp. Entry e's query is row q_row[e] of q (fp32, row stride
// q_stride), it sees keys 0 .. kv_len[e] - 1 (0: no key; output 0) through
// the block table at block_tables + table_offset[e]. The arrays are device
// memory read when the kernel runs, so the launch can be captured in a CUDA
// graph and replayed with new contents. `workspace` is device memory of
// DecodeWorkspaceFloats(num_entries, heads, head_dim, max_splits) floats.
// head_dim 1..256, heads / kv_heads at most 64, max_splits 1..64.
cudaError_t DecodeAttention(const float* q, int64_t q_stride,
                            const int32_t* q_row, const int32_t* kv_len,
                            const int32_t* table_offset, int num_entries,
                            const int32_t* block_tables, const PagedPool& pool,
                            int heads, float scale, int max_splits,
                            float* workspace, DType out_dtype, void* out,
                            int64_t out_stride, cudaStream_t stream);

int64_t DecodeWorkspaceFloats(int num_entries, int heads, int head_dim,
                              int max_splits);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_
