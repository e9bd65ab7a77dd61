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

namespace longctx {

// KvDtype is the element type of cached keys and values.
enum class KvDtype { kF16, kF32 };

// ParseKvDtype accepts "f16" and "f32".
absl::StatusOr<KvDtype> ParseKvDtype(const std::string& text);

// KvLayout is the shape of one block.
struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 256;  // Tokens per block (B).
  KvDtype dtype = KvDtype::kF16;

  size_t ElementBytes() const { return dtype == KvDtype::kF16 ? 2 : 4; }
  // Bytes of K (or V) of one layer of one block.
  size_t TensorBytes() const {
    return static_cast<size_t>(num_kv_heads) * block_size * head_dim *
           ElementBytes();
  }
  // Bytes of K and V of one layer of one block.
  size_t LayerBytes() const { return 2 * TensorBytes(); }
  // Bytes of one block.
  size_t BlockBytes() const { return LayerBytes() * num_layers; }
};

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
  KvBlockPool(const KvLayout& layout, int capacity);

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
