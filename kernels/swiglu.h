// SwiGLU activation of the Llama MLP: out = silu(gate) * up, element-wise,
// with silu(g) = g / (1 + exp(-g)), in fp32.
#ifndef LONGCTX_KERNELS_SWIGLU_H_
#define LONGCTX_KERNELS_SWIGLU_H_

#include <cstdint>

namespace longctx::kernels {

// SwiGlu computes out[r, i] = silu(gate[r, i]) * up[r, i] for r < rows,
// i < dim; each operand has its own row stride (>= dim). out may be gate or
// up (same stride). Thread-safe; large inputs run on the calling thread's
// OpenMP team.
void SwiGlu(const float* gate, int64_t gate_stride, const float* up,
            int64_t up_stride, int64_t rows, int64_t dim, float* out,
            int64_t out_stride);

// SwiGluFused is SwiGlu over a fused gate|up projection: gate_up is
// [rows, 2 * dim] with each row's gate in its first dim values and up in the
// last dim. out is [rows, dim] with row stride out_stride; it may be gate_up
// itself (out_stride == 2 * dim), leaving the result in each row's first half.
inline void SwiGluFused(const float* gate_up, int64_t rows, int64_t dim,
                        float* out, int64_t out_stride) {
  SwiGlu(gate_up, 2 * dim, gate_up + dim, 2 * dim, rows, dim, out, out_stride);
}

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_SWIGLU_H_
