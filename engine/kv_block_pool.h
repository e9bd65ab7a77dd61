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
//
// Prefix cache: a block whose contents are final (a full prompt block) may be
// published under its chained block key (kvblock/block_keys). A
// published block outlives its sequences: when its last reference goes, it
// stays in the pool as a cached block that a later request with the same
// prefix takes with Lookup (no copy), until Allocate needs its room. Eviction
// takes the least recently released cached block that is already in the memory
// store (MarkStored), and only when there is none the least recently released
// one that is not; a block that is referenced is never evicted. Cached blocks
// nobody references count as free (free_blocks), since Allocate takes them.
#ifndef LONGCTX_ENGINE_KV_BLOCK_POOL_H_
#define LONGCTX_ENGINE_KV_BLOCK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kvblock/kv_layout.h"

namespace longctx {

// KvBlockMemory is where a pool's block bytes live: the host's memory (what
// KvBlockPool::Create maps), or a GPU's (model/cuda). Block b
// occupies [b * BlockBytes(), (b + 1) * BlockBytes()) from base().
class KvBlockMemory {
 public:
  virtual ~KvBlockMemory() = default;

  // The address of block 0: a device address when !host_accessible().
  virtual uint8_t* base() = 0;
  // Bytes available from base().
  virtual size_t size() const = 0;
  // Whether the host reads and writes the bytes in place (base() is a host
  // address).
  virtual bool host_accessible() const = 0;
  // The CUDA device the bytes are on; -1 for host memory.
  virtual int device() const = 0;

  // CopyOut copies `bytes` at `offset` to host memory `dst`; CopyIn copies
  // host memory `src` to `offset`. Both block until done and are thread-safe
  // (a device's copies run on their own streams, through page-locked
  // buffers, beside the computation). INTERNAL on a device error.
  virtual absl::Status CopyOut(size_t offset, size_t bytes, void* dst) = 0;
  virtual absl::Status CopyIn(const void* src, size_t offset, size_t bytes) = 0;
};

// KvBlockPool is thread-safe for allocation and reference counting; the
// contents of a block are written by whoever allocated it and read by its
// sequences.
class KvBlockPool {
 public:
  // Create reserves floor(budget_bytes / BlockBytes()) blocks in anonymous
  // memory advised for transparent huge pages (2 MiB pages: a first write
  // faults 512 times less often than with 4 KiB pages). With `prefault`, every
  // page is written once now, so no request pays for first touches later (on
  // a virtual machine a first touch of memory can cost as much as copying it
  // ten times); without it, pages become resident as blocks are first
  // written. INVALID_ARGUMENT for a layout with a non-positive size,
  // RESOURCE_EXHAUSTED if not even one block fits or the memory cannot be
  // mapped.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(
      const KvLayout& layout, size_t budget_bytes, bool prefault = false);

  // CreateIn makes a pool of floor(memory->size() / BlockBytes()) blocks in
  // `memory` (a GPU's, say). INVALID_ARGUMENT for a layout with a
  // non-positive size, RESOURCE_EXHAUSTED if not even one block fits.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> CreateIn(
      const KvLayout& layout, std::unique_ptr<KvBlockMemory> memory);

  // CreateUnbacked makes a pool of `capacity` block ids with no storage: it
  // only allocates and counts references (a group leader's ids for blocks that
  // live on its ranks). Data, K and V must not be called on it.
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> CreateUnbacked(
      const KvLayout& layout, int capacity);

  const KvLayout& layout() const { return layout_; }
  int capacity() const { return capacity_; }
  // Blocks Allocate can hand out: never used, or cached and unreferenced.
  int free_blocks() const;
  // Blocks referenced by someone (a sequence, an offload in progress).
  int used_blocks() const { return capacity_ - free_blocks(); }

  // Allocate takes a free block with reference count 1, evicting a cached
  // unreferenced block (see above) when no block was never used.
  // RESOURCE_EXHAUSTED when every block is referenced.
  absl::StatusOr<int> Allocate();

  // Ref adds a reference to a block in use; Unref drops one and, at zero, frees
  // the block or (when published) keeps it cached. Both abort on a block that
  // is not in use (a bug, never an input error).
  void Ref(int block);
  void Unref(int block);
  int RefCount(int block) const;
  // Whether the block is allocated or cached, i.e. its contents may still be
  // read (any id; out-of-range ids are not).
  bool InUse(int block) const;
  // How many times Allocate has handed out the block: tells a later holder of
  // the id from an earlier one.
  uint64_t Allocations(int block) const;

  // Publish names the in-use `block` by `key` (any bytes; the engine uses the
  // 16-byte KeyBytes of a chained block key). The block's contents must be
  // final from now on: its later users only read it. Returns true when `key`
  // now names `block`; false, changing nothing, when `key` already names
  // another block or `block` already has another key. Aborts on a block not in
  // use.
  bool Publish(const std::string& key, int block);

  // Lookup returns the block published under `key` with one more reference
  // (taking it out of the eviction order), or -1 when none is.
  int Lookup(const std::string& key);

  // MarkStored records that the memory store holds the block published under
  // `key` (if one still is), which makes it evicted before unstored ones.
  void MarkStored(const std::string& key);

  // DropCached unpublishes every block: Lookup finds none of them from now on;
  // the unreferenced ones become free, the referenced ones free with their
  // last Unref. For when the cached contents can no longer be trusted (a
  // group's blocks after it re-formed). Returns how many were published.
  int DropCached();

  // Published blocks (referenced or not), and how many were evicted so far.
  int cached_blocks() const;
  int64_t evicted_blocks() const;

  // Whether Data, K and V are host addresses (false for a GPU's pool:
  // they are device addresses then, for the kernels).
  bool host_accessible() const {
    return memory_ == nullptr || memory_->host_accessible();
  }
  // The memory the blocks live in (null for an unbacked pool).
  KvBlockMemory* memory() { return memory_.get(); }

  // ReadBlock copies block `block`'s BlockBytes() bytes to host memory `dst`;
  // WriteBlock copies them from host memory `src` into the block. They work
  // for every backed pool, host or device (INTERNAL on a device error).
  absl::Status ReadBlock(int block, void* dst);
  absl::Status WriteBlock(int block, const void* src);

  // The block's buffer, and its layer's K and V tensors (device addresses in
  // a device's pool).
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
  std::unique_ptr<KvBlockMemory> memory_;  // Null when unbacked.
  uint8_t* base_ = nullptr;                // memory_->base().

  // A published block's key, and whether the store holds it.
  struct Published {
    std::string key;
    bool stored = false;
  };

  // Takes the block to evict out of the cache; -1 when nothing is evictable.
  int EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);      // Stack of free block ids.
  std::vector<int> refcount_ ABSL_GUARDED_BY(mu_);  // Per block.
  std::vector<uint64_t> allocations_ ABSL_GUARDED_BY(mu_);  // Per block.
  // Per block; key empty when not published.
  std::vector<Published> published_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> by_key_ ABSL_GUARDED_BY(mu_);
  // Cached unreferenced blocks, least recently released first, and each one's
  // place in that list.
  std::list<int> evictable_ ABSL_GUARDED_BY(mu_);
  std::vector<std::list<int>::iterator> evictable_at_ ABSL_GUARDED_BY(mu_);
  int evictable_stored_ ABSL_GUARDED_BY(mu_) = 0;  // Of evictable_.
  int64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace longctx

#endif  // LONGCTX_ENGINE_KV_BLOCK_POOL_H_
