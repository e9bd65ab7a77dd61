// GEMM on the GPU through cuBLASLt (tensor cores for bf16): the linear layers
// of the model, the GPU counterpart of kernels/gemm.h.
//
//   Y[m, n] = sum_k X[m, k] * W[n, k]      (+ Y[m, n] when accumulate)
//
// X is [m, k] row-major (row stride x_stride), W is a weight in Hugging Face
// layout [n, k] row-major, Y is [m, n] row-major fp32 (row stride y_stride).
// X and W share one element type: fp32 (exact fp32 products, no TF32) or bf16
// (products accumulate in fp32). This header needs only the CUDA runtime.
#ifndef LONGCTX_KERNELS_CUDA_GEMM_CUDA_H_
#define LONGCTX_KERNELS_CUDA_GEMM_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda {

// CudaGemm holds a cuBLASLt handle, a workspace on the device and the
// algorithms chosen per shape (picked by cuBLASLt's heuristic on first use of
// a shape, then reused: no planning in the token loop). Used from one thread
// at a time; Run may be captured in a CUDA graph once the shape has run once
// outside capture.
class CudaGemm {
 public:
  ~CudaGemm();
  CudaGemm(const CudaGemm&) = delete;
  CudaGemm& operator=(const CudaGemm&) = delete;

  // Create makes the handle and a workspace of `workspace_bytes` on the
  // current device. On failure returns null and sets *error.
  static std::unique_ptr<CudaGemm> Create(size_t workspace_bytes,
                                          std::string* error);

  // Run enqueues Y = X W^T (or Y += X W^T) on `stream`. dtype is kF32 or
  // kBf16 (X and W). Strides are in elements; m, n, k >= 1. Returns a
  // description of the failure (empty on success): bad arguments, no
  // algorithm for the shape, or the launch's error.
  std::string Run(DType dtype, const void* x, int64_t x_stride, const void* w,
                  float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k,
                  bool accumulate, cudaStream_t stream);

 private:
  struct Impl;
  explicit CudaGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_GEMM_CUDA_H_
