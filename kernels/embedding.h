// Embedding lookup: rows of a token-embedding table, converted to fp32.
#ifndef LONGCTX_KERNELS_EMBEDDING_H_
#define LONGCTX_KERNELS_EMBEDDING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace longctx::kernels {

// EmbeddingLookup writes out[i, :] = table[ids[i], :] as fp32 for i < n.
// table is row-major [vocab_size, dim] of type `dtype` (rows contiguous, as
// in a safetensors file); out has row stride out_stride >= dim.
// INVALID_ARGUMENT, with nothing written, if an id is outside
// [0, vocab_size). Thread-safe; large inputs run on the calling thread's
// OpenMP team.
absl::Status EmbeddingLookup(const void* table, DType dtype, int64_t vocab_size,
                             int64_t dim, const int32_t* ids, int64_t n,
                             float* out, int64_t out_stride);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_EMBEDDING_H_
