// Embedding lookup on the GPU: rows of a token-embedding table, converted to
// fp32 — the contract of kernels/embedding.h, on device memory.
#ifndef LONGCTX_KERNELS_CUDA_EMBEDDING_CUDA_H_
#define LONGCTX_KERNELS_CUDA_EMBEDDING_CUDA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda {

// EmbeddingLookup writes out[i, :] = table[ids[i], :] as fp32 for i < n,
// enqueued on `stream`. table is row-major [vocab_size, dim] of type `dtype`;
// out has row stride out_stride >= dim. All pointers are device memory.
//
// The ids live on the device, so their check cannot fail the call: when the
// enqueued work completes, *first_bad (one int64 of device memory) holds n if
// every id is in [0, vocab_size), and otherwise the smallest index i whose id
// is outside it — and then nothing has been written to out, as the CPU kernel
// writes nothing when it returns INVALID_ARGUMENT. cudaErrorInvalidValue for
// bad sizes or null pointers.
cudaError_t EmbeddingLookup(const void* table, DType dtype, int64_t vocab_size,
                            int64_t dim, const int32_t* ids, int64_t n,
                            float* out, int64_t out_stride, int64_t* first_bad,
                            cudaStream_t stream);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_KERNELS_CUDA_EMBEDDING_CUDA_H_
