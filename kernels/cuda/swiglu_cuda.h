// SwiGLU activation of the Llama MLP on the GPU: out = silu(gate) * up,
// element-wise, silu(g) = g / (1 + exp(-g)), in fp32 — the contract of
// kernels/swiglu.h, on device memory.
#ifndef LONGCTX_KERNELS_CUDA_SWIGLU_CUDA_H_
#define LONGCTX_KERNELS_CUDA_SWIGLU_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::kernels::cuda {

// SwiGlu computes out[r, i] = silu(gate[r, i]) * up[r, i] for r < rows,
// i < dim, enqueued on `stream`; each operand has its own row stride (>= dim).
// out may be gate or up (same stride). All pointers are device memory.
// cudaErrorInvalidValue for short strides or null pointers.
cudaError_t SwiGlu(const float* gate, int64_t gate_stride, const float* up,
                   int64_t up_stride, int64_t rows, int64_t dim, float* out,
                   int64_t out_stride, cudaStream_t stream);

// SwiGluFused is SwiGlu over a fused gate|up projection [rows, 2 * dim]: each
// row's gate in its first dim values, up in the last dim. out may be gate_up
// itself (out_stride == 2 * dim), leaving the result in each row's first half.
inline cudaError_t SwiGluFused(const float* gate_up, int64_t rows, int64_t dim,
                               float* out, int64_t out_stride,
                               cudaStream_t stream) {
  return SwiGlu(gate_up, 2 * dim, gate_up + dim, 2 * dim, rows, dim, out,
                out_stride, stream);
}

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_SWIGLU_CUDA_H_
