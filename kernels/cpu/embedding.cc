#include "kernels/embedding.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/parallel.h"
#include "kernels/dtype.h"

namespace longctx::kernels {

absl::Status EmbeddingLookup(const void* table, DType dtype, int64_t vocab_size,
                             int64_t dim, const int32_t* ids, int64_t n,
                             float* out, int64_t out_stride) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", ids[i], " at index ", i,
                       " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  const size_t row_bytes = static_cast<size_t>(dim) * DTypeSize(dtype);
  internal::ParallelFor(n, n * dim, [&](int64_t i) {
    ConvertToF32(dtype, static_cast<const uint8_t*>(table) + ids[i] * row_bytes,
                 out + i * out_stride, dim);
  });
  return absl::OkStatus();
}

}  // namespace longctx::kernels
