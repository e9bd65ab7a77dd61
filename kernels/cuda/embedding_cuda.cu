#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/embedding_cuda.h"

namespace longctx::kernels::cuda {
namespace {

using internal::LoadF32;

constexpr int kThreads = 256;

static_assert(sizeof(unsigned long long) == sizeof(int64_t),
              "first_bad is updated with a 64-bit atomicMin");

__global__ void InitKernel(unsigned long long* first_bad, int64_t n) {
  *first_bad = static_cast<unsigned long long>(n);
}

// Lowers *first_bad to the index of every id outside [0, vocab_size).
__global__ void CheckKernel(const int32_t* ids, int64_t n, int64_t vocab_size,
                            unsigned long long* first_bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size) {
      atomicMin(first_bad, static_cast<unsigned long long>(i));
    }
  }
}

// Copies the rows, unless CheckKernel (earlier on the same stream) found a bad
// id.
template <DType T>
__global__ void LookupKernel(const void* table, int64_t dim, const int32_t* ids,
                             int64_t n, float* out, int64_t out_stride,
                             const unsigned long long* first_bad) {
  if (*first_bad != static_cast<unsigned long long>(n)) return;
  const int64_t total = n * dim;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx =
           static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += stride) {
    const int64_t i = idx / dim;
    const int64_t x = idx - i * dim;
    out[i * out_stride + x] =
        LoadF32<T>(table, static_cast<size_t>(ids[i]) * dim + x);
  }
}

template <DType T>
cudaError_t Lookup(const void* table, int64_t dim, const int32_t* ids,
                   int64_t n, float* out, int64_t out_stride,
                   const unsigned long long* first_bad, cudaStream_t stream) {
  LookupKernel<T>
      <<<internal::GridFor(n * dim, kThreads), kThreads, 0, stream>>>(
          table, dim, ids, n, out, out_stride, first_bad);
  return cudaGetLastError();
}

}  // namespace

cudaError_t EmbeddingLookup(const void* table, DType dtype, int64_t vocab_size,
                            int64_t dim, const int32_t* ids, int64_t n,
                            float* out, int64_t out_stride, int64_t* first_bad,
                            cudaStream_t stream) {
  if (vocab_size < 0 || dim < 0 || n < 0 || out_stride < dim ||
      first_bad == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (n > 0 &&
      (ids == nullptr || (dim > 0 && (table == nullptr || out == nullptr)))) {
    return cudaErrorInvalidValue;
  }
  auto* bad = reinterpret_cast<unsigned long long*>(first_bad);
  InitKernel<<<1, 1, 0, stream>>>(bad, n);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || n == 0) return e;
  CheckKernel<<<internal::GridFor(n, kThreads), kThreads, 0, stream>>>(
      ids, n, vocab_size, bad);
  e = cudaGetLastError();
  if (e != cudaSuccess || dim == 0) return e;
  switch (dtype) {
    case DType::kF32:
      return Lookup<DType::kF32>(table, dim, ids, n, out, out_stride, bad,
                                 stream);
    case DType::kF16:
      return Lookup<DType::kF16>(table, dim, ids, n, out, out_stride, bad,
                                 stream);
    case DType::kBf16:
      return Lookup<DType::kBf16>(table, dim, ids, n, out, out_stride, bad,
                                  stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace longctx::kernels::cuda
