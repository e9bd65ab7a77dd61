// RMSNorm on the GPU, as in Hugging Face LlamaRMSNorm (fp32) — the contract of
// kernels/rms_norm.h, on device memory:
//
//   y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]
//
// and the fused variant for the pre-norm residual stream of a decoder layer:
//
//   residual[r, :] += delta[r, :];  y[r, :] = RmsNorm(residual[r, :])
//
// Rows are `dim` contiguous floats at a row stride. This header needs only the
// CUDA runtime.
#ifndef LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_
#define LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::kernels::cuda {

// RmsNorm normalizes `rows` rows of x (row stride x_stride >= dim) into y (row
// stride y_stride >= dim), dim >= 1, eps > 0, enqueued on `stream`. x, weight
// and y are device pointers; y may be x (with y_stride == x_stride).
// cudaErrorInvalidValue for bad sizes or null pointers.
cudaError_t RmsNorm(const float* x, int64_t x_stride, const float* weight,
                    int64_t rows, int64_t dim, float eps, float* y,
                    int64_t y_stride, cudaStream_t stream);

// AddRmsNorm adds delta into residual, then writes RmsNorm(residual) to y.
// residual keeps the sum. y may be delta (with equal strides) but not
// residual.
cudaError_t AddRmsNorm(float* residual, int64_t residual_stride,
                       const float* delta, int64_t delta_stride,
                       const float* weight, int64_t rows, int64_t dim,
                       float eps, float* y, int64_t y_stride,
                       cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_
