// KvBlockPool: the worker's KV cache, a fixed pool of blocks of B tokens each.
//
// One block holds the keys and values of B consecutive tokens of one sequence
// for every layer, in one contiguous buffer:
//
//   block = layer 0: K [kv_heads][B][head_dim], V [kv_heads][B][head_dim]
//           layer 1: K ..., V ...
//           ...
//
// so a rank can hold any subset of a sequence's blocks (context parallelism),
// and a block is offloaded or restored by copying one buffer (or layer by
// layer). Blocks are reference counted so sequences sharing a prefix share its
// blocks.
#ifndef LONGCTX_SERVICES_WORKER_KV_BLOCK_POOL_H_
#define LONGCTX_SERVICES_WORKER_KV_BLOCK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/common/kv_layout.h"

namespace longctx {

// KvBlockPool is thread-safe for allocation and reference counting; the
// contents of a block are written by whoever allocated it and read by its
// sequences.
class KvBlockPool {
 public:
  // Create reserves floor(budget_bytes / BlockBytes()) blocks. INVALID_ARGUMENT
  // for a layout with a non-positive size, RESOURCE_EXHAUSTED if not even one
  // block fits.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(
      const KvLayout& layout, size_t budget_bytes);

  // CreateUnbacked makes a pool of `capacity` block ids with no storage: it
  // only allocates and counts references (a group leader's ids for blocks that
  // live on its ranks). Data, K and V must not be called on it.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> CreateUnbacked(
      const KvLayout& layout, int capacity);

  const KvLayout& layout() const { return layout_; }
  int capacity() const { return capacity_; }
  int free_blocks() const;
  int used_blocks() const { return capacity_ - free_blocks(); }

  // Allocate takes a free block with reference count 1. RESOURCE_EXHAUSTED when
  // the pool is full.
  absl::StatusOr<int> Allocate();

  // Ref adds a reference to a block in use; Unref drops one and frees the block
  // at zero. Both abort on a block that is not in use (a bug, never an input
  // error).
  void Ref(int block);
  void Unref(int block);
  int RefCount(int block) const;
  // Whether the block is allocated (any id; out-of-range ids are not).
  bool InUse(int block) const;

  // The block's buffer, and its layer's K and V tensors.
  uint8_t* Data(int block) {
    return base_ + static_cast<size_t>(block) * block_bytes_;
  }
  uint8_t* K(int block, int layer) {
    return Data(block) + layer * layer_bytes_;
  }
  uint8_t* V(int block, int layer) {
    return K(block, layer) + layout_.TensorBytes();
  }

 private:
  KvBlockPool(const KvLayout& layout, int capacity, bool backed);

  const KvLayout layout_;
  const int capacity_;
  const size_t block_bytes_;
  const size_t layer_bytes_;
  std::unique_ptr<uint8_t[]> storage_;
  uint8_t* base_ = nullptr;  // storage_, aligned to 64 bytes.

  mutable absl::Mutex mu_;
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);      // Stack of free block ids.
  std::vector<int> refcount_ ABSL_GUARDED_BY(mu_);  // Per block.
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_KV_BLOCK_POOL_H_
