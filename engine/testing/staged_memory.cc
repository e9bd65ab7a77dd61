#include "engine/testing/staged_memory.h"

#include <cstring>

namespace longctx::testing {

absl::Status StagedMemory::CopyOut(size_t offset, size_t bytes, void* dst) {
  if (offset > bytes_.size() || bytes > bytes_.size() - offset) {
    return absl::InvalidArgumentError("copy outside the memory");
  }
  std::memcpy(dst, bytes_.data() + offset, bytes);
  out_ += static_cast<int64_t>(bytes);
  return absl::OkStatus();
}

absl::Status StagedMemory::CopyIn(const void* src, size_t offset,
                                  size_t bytes) {
  if (offset > bytes_.size() || bytes > bytes_.size() - offset) {
    return absl::InvalidArgumentError("copy outside the memory");
  }
  std::memcpy(bytes_.data() + offset, src, bytes);
  in_ += static_cast<int64_t>(bytes);
  return absl::OkStatus();
}

}  // namespace longctx::testing
