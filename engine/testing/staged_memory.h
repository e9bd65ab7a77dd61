// StagedMemory: a KV pool's memory that behaves as a GPU's does for everyone
// but the model: host_accessible() is false, so the offloader and restore
// move blocks only through CopyOut and CopyIn. The bytes are host memory, so
// the CPU model still computes in place: the staging paths of offload and
// restore are tested without a GPU.
#ifndef LONGCTX_ENGINE_TESTING_STAGED_MEMORY_H_
#define LONGCTX_ENGINE_TESTING_STAGED_MEMORY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/kv_block_pool.h"

namespace longctx::testing {

class StagedMemory : public KvBlockMemory {
 public:
  explicit StagedMemory(size_t bytes) : bytes_(bytes) {}

  uint8_t* base() override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }
  bool host_accessible() const override { return false; }
  int device() const override { return -1; }
  absl::Status CopyOut(size_t offset, size_t bytes, void* dst) override;
  absl::Status CopyIn(const void* src, size_t offset, size_t bytes) override;

  // Bytes moved by CopyOut and CopyIn so far.
  int64_t copied_out() const { return out_.load(); }
  int64_t copied_in() const { return in_.load(); }

 private:
  std::vector<uint8_t> bytes_;
  std::atomic<int64_t> out_{0}, in_{0};
};

}  // namespace longctx::testing

#endif  // LONGCTX_ENGINE_TESTING_STAGED_MEMORY_H_
