#include "services/worker/kv_block_pool.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace longctx {

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(
    const KvLayout& layout, size_t budget_bytes) {
  if (layout.num_layers <= 0 || layout.num_kv_heads <= 0 ||
      layout.head_dim <= 0 || layout.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout needs positive sizes: layers=", layout.num_layers,
        " kv_heads=", layout.num_kv_heads, " head_dim=", layout.head_dim,
        " block_size=", layout.block_size));
  }
  const size_t blocks = budget_bytes / layout.BlockBytes();
  if (blocks == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV budget of ", budget_bytes, " bytes holds no block of ",
                     layout.BlockBytes(), " bytes"));
  }
  if (blocks > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("KV budget holds too many blocks");
  }
  return std::unique_ptr<KvBlockPool>(
      new KvBlockPool(layout, static_cast<int>(blocks), /*backed=*/true));
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::CreateUnbacked(
    const KvLayout& layout, int capacity) {
  if (capacity <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a pool needs at least one block, not ", capacity));
  }
  return std::unique_ptr<KvBlockPool>(
      new KvBlockPool(layout, capacity, /*backed=*/false));
}

KvBlockPool::KvBlockPool(const KvLayout& layout, int capacity, bool backed)
    : layout_(layout),
      capacity_(capacity),
      block_bytes_(layout.BlockBytes()),
      layer_bytes_(layout.LayerBytes()) {
  if (!backed) {
    absl::MutexLock lock(&mu_);
    refcount_.assign(capacity, 0);
    for (int i = capacity - 1; i >= 0; --i) free_.push_back(i);
    return;
  }
  const size_t bytes = block_bytes_ * static_cast<size_t>(capacity) + 64;
  // Not value-initialized: pages are touched only when blocks are written.
  storage_.reset(new uint8_t[bytes]);
  uintptr_t address = reinterpret_cast<uintptr_t>(storage_.get());
  base_ = reinterpret_cast<uint8_t*>((address + 63) & ~uintptr_t{63});
  absl::MutexLock lock(&mu_);
  refcount_.assign(capacity, 0);
  free_.reserve(capacity);
  // Lowest ids on top of the stack, so allocation order is predictable in
  // tests.
  for (int i = capacity - 1; i >= 0; --i) free_.push_back(i);
}

int KvBlockPool::free_blocks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(free_.size());
}

absl::StatusOr<int> KvBlockPool::Allocate() {
  absl::MutexLock lock(&mu_);
  if (free_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache is full (", capacity_, " blocks of ",
                     layout_.block_size, " tokens)"));
  }
  int block = free_.back();
  free_.pop_back();
  refcount_[block] = 1;
  return block;
}

void KvBlockPool::Ref(int block) {
  absl::MutexLock lock(&mu_);
  if (block < 0 || block >= capacity_ || refcount_[block] <= 0) std::abort();
  ++refcount_[block];
}

void KvBlockPool::Unref(int block) {
  absl::MutexLock lock(&mu_);
  if (block < 0 || block >= capacity_ || refcount_[block] <= 0) std::abort();
  if (--refcount_[block] == 0) free_.push_back(block);
}

bool KvBlockPool::InUse(int block) const {
  absl::MutexLock lock(&mu_);
  return block >= 0 && block < capacity_ && refcount_[block] > 0;
}

int KvBlockPool::RefCount(int block) const {
  absl::MutexLock lock(&mu_);
  return refcount_[block];
}

}  // namespace longctx
