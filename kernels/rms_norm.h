// RMSNorm, as in Hugging Face LlamaRMSNorm (computed in fp32):
//
//   y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]
//
// and a fused variant for the pre-norm residual stream of a decoder layer:
//
//   residual[r, :] += delta[r, :];  y[r, :] = RmsNorm(residual[r, :])
//
// Rows are `dim` contiguous floats at a row stride. Thread-safe; large inputs
// run on the calling thread's OpenMP team.
#ifndef LONGCTX_KERNELS_RMS_NORM_H_
#define LONGCTX_KERNELS_RMS_NORM_H_

#include <cstdint>

namespace longctx::kernels {

// RmsNorm normalizes `rows` rows of x (row stride x_stride >= dim) into y
// (row stride y_stride >= dim), dim >= 1. weight is [dim]; eps > 0 (Llama: 1e-5
// or 1e-6). y may be x (in place, with y_stride == x_stride).
void RmsNorm(const float* x, int64_t x_stride, const float* weight,
             int64_t rows, int64_t dim, float eps, float* y, int64_t y_stride);

// AddRmsNorm adds delta into residual, then writes RmsNorm(residual) to y.
// residual keeps the sum. y may be delta (with equal strides) but not
// residual.
void AddRmsNorm(float* residual, int64_t residual_stride, const float* delta,
                int64_t delta_stride, const float* weight, int64_t rows,
                int64_t dim, float eps, float* y, int64_t y_stride);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_RMS_NORM_H_
