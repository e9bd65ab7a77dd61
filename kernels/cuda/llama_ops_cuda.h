// The element-wise steps of a Llama decoder layer on the GPU, fused where a
// step feeds the next GEMM: each reads the fp32 residual stream or a GEMM's
// fp32 output and writes the next GEMM's input in its element type (fp32 or
// bf16). Same arithmetic as the CPU kernels (kernels/rms_norm.h, rope.h,
// swiglu.h, embedding.h): fp32 math, rotary angles in double precision.
// All pointers are device memory; every function enqueues on `stream` and
// returns cudaErrorInvalidValue, launching nothing, for bad sizes or null
// pointers. This header needs only the CUDA runtime and kernels/dtype.h.
#ifndef LONGCTX_KERNELS_CUDA_LLAMA_OPS_CUDA_H_
#define LONGCTX_KERNELS_CUDA_LLAMA_OPS_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda {

// EmbedRows writes out[i, :] = table[ids[i], :] as fp32 (row stride dim) for
// i < n. table is [vocab, dim] of `dtype`. The ids must already be known to
// be in [0, vocab): the caller checks them on the host.
cudaError_t EmbedRows(const void* table, DType dtype, int64_t dim,
                      const int32_t* ids, int64_t n, float* out,
                      cudaStream_t stream);

// NormRows is the input norm of a layer and the final norm of the model:
// for r < rows, with s = row_index ? row_index[r] : r,
//
//   v = residual[s, :] (+ delta[s, :] when delta is not null)
//   residual[s, :] = v            (only with update_residual)
//   out[r, :] = v / sqrt(mean(v^2) + eps) * weight[:]   as out_dtype
//
// Rows are `dim` contiguous elements; residual and delta have row stride dim,
// out has row stride out_stride. out_dtype is kF32 or kBf16.
cudaError_t NormRows(float* residual, const float* delta,
                     const int32_t* row_index, int64_t rows, int64_t dim,
                     const float* weight, float eps, bool update_residual,
                     DType out_dtype, void* out, int64_t out_stride,
                     cudaStream_t stream);

// RopeTable fills table[i * half + j] = (cos(a), sin(a)), a = positions[i] *
// inv_freq[j], for i < n, j < half, computed in double precision and rounded
// to fp32, as the CPU's ApplyRope does.
cudaError_t RopeTable(const float* inv_freq, int half, const int32_t* positions,
                      int64_t n, float2* table, cudaStream_t stream);

// KvDest says where QkvPost stores each token's key and value: token i goes
// to pool block block_id[i] (skipped when negative) at slot slot[i], in
// layer `layer`. A block is [layers][K, V][kv_heads][block_size][head_dim]
// of kv_dtype (kF16 or kF32) starting at pool + block_id * block_bytes.
struct KvDest {
  void* pool = nullptr;
  int64_t block_bytes = 0;
  int layer = 0;
  int block_size = 0;
  DType kv_dtype = DType::kF16;
  const int32_t* block_id = nullptr;
  const int32_t* slot = nullptr;
};

// QkvPost finishes the QKV projection of n tokens. qkv is fp32 [n, q_dim +
// 2 * kv_dim] (q_dim = heads * head_dim, kv_dim = kv_heads * head_dim), the
// output of the fused projection. It adds `bias` (fp32 [q_dim + 2 * kv_dim],
// may be null), rotates q and k with `rope` (RopeTable's rows, one per
// token), writes the rotated q back into qkv (fp32) and, when q16 is not
// null, also as fp16 to q16 [n, q_dim]; and stores k and v into the KV pool
// as `dest` says.
cudaError_t QkvPost(float* qkv, int64_t n, int heads, int kv_heads,
                    int head_dim, const float* bias, const float2* rope,
                    void* q16, const KvDest& dest, cudaStream_t stream);

// SwiGluRows writes out[r, i] = silu(gate_up[r, i]) * gate_up[r, dim + i] for
// r < rows, i < dim (gate_up fp32 [rows, 2 * dim]) as out_dtype (kF32 or
// kBf16), row stride dim.
cudaError_t SwiGluRows(const float* gate_up, int64_t rows, int64_t dim,
                       DType out_dtype, void* out, cudaStream_t stream);

// ConvertRows converts fp32 [rows, dim] (row stride in_stride) to out_dtype
// [rows, dim] (row stride out_stride). With out_dtype kF32 it copies.
cudaError_t ConvertRows(const float* in, int64_t in_stride, int64_t rows,
                        int64_t dim, DType out_dtype, void* out,
                        int64_t out_stride, cudaStream_t stream);

// ConvertTensor converts n elements of src_dtype to dst_dtype (kF32, kF16
// or kBf16), rounding to nearest even.
cudaError_t ConvertTensor(const void* src, DType src_dtype, int64_t n,
                          void* dst, DType dst_dtype, cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_LLAMA_OPS_CUDA_H_
