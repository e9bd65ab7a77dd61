// RMSNorm on the GPU: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:].
// Same contract as the CPU kernel; this header needs only the CUDA runtime.
#ifndef LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_
#define LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_

#include <cuda_runtime.h>

namespace longctx::kernels::cuda {

// RmsNorm normalizes `rows` rows of `dim` fp32 values. x, weight and y are device
// pointers; x and y may alias. Launches on `stream` and returns the launch status.
cudaError_t RmsNorm(const float* x, const float* weight, float* y, int rows,
                    int dim, float eps, cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_RMS_NORM_CUDA_H_
