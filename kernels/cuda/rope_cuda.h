// Rotary position embeddings on the GPU, Hugging Face Llama convention
// ("rotate_half"): the contract of kernels/rope.h's ApplyRope, on device
// memory. For a head vector x of even size d, half = d / 2, and position p:
//
//   a_i = p * inv_freq[i],  i < half
//   y[i]        = x[i] * cos(a_i) - x[i + half] * sin(a_i)
//   y[i + half] = x[i + half] * cos(a_i) + x[i] * sin(a_i)
//
// The inverse frequencies come from kernels::ComputeRopeInvFreq (with or
// without Llama 3 scaling), computed once on the host and copied to the
// device. As on the CPU, angles and their sines and cosines are computed in
// double precision, so results stay accurate at positions in the millions.
#ifndef LONGCTX_KERNELS_CUDA_ROPE_CUDA_H_
#define LONGCTX_KERNELS_CUDA_ROPE_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::kernels::cuda {

// ApplyRope rotates, in place, every head of q (and of k, unless k is null)
// for n_tokens tokens at absolute positions positions[0..n_tokens), enqueued
// on `stream`. All pointers are device memory. q is [n_tokens, q_heads,
// head_dim] with token stride q_stride >= q_heads * head_dim; likewise k with
// k_heads and k_stride. inv_freq has head_dim / 2 entries. q and k must not
// overlap. cudaErrorInvalidValue for an odd or non-positive head_dim, short
// strides or null pointers.
cudaError_t ApplyRope(const float* inv_freq, int head_dim,
                      const int32_t* positions, int64_t n_tokens, float* q,
                      int64_t q_stride, int q_heads, float* k, int64_t k_stride,
                      int k_heads, cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_ROPE_CUDA_H_
