#include "engine/kv_block_pool.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace longctx {

namespace {

// Transparent huge pages are 2 MiB on x86-64 and arm64 (4 KiB base pages).
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kPage = 4096;

// HostMemory is anonymous memory advised for transparent huge pages, its
// first block on a 2 MiB boundary.
class HostMemory : public KvBlockMemory {
 public:
  ~HostMemory() override { munmap(mapping_, mapped_); }

  // Create maps room for `bytes`; with `prefault`, touches every page.
  static absl::StatusOr<std::unique_ptr<HostMemory>> Create(size_t bytes,
                                                            bool prefault) {
    // One huge page more than needed, so the blocks can start on a huge page
    // boundary.
    const size_t mapped =
        (bytes + kHugePage - 1) / kHugePage * kHugePage + kHugePage;
    void* mapping = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot map ", mapped, " bytes for the KV cache (",
                       std::strerror(errno), "); lower --kv_cache_bytes"));
    }
    std::unique_ptr<HostMemory> memory(new HostMemory);
    memory->mapping_ = mapping;
    memory->mapped_ = mapped;
    memory->size_ = bytes;
    const uintptr_t address = reinterpret_cast<uintptr_t>(mapping);
    memory->base_ = reinterpret_cast<uint8_t*>((address + kHugePage - 1) &
                                               ~uintptr_t{kHugePage - 1});
    // Advice only: without huge pages (disabled, or none free) the pool works
    // on base pages.
    (void)madvise(memory->base_, mapped - kHugePage, MADV_HUGEPAGE);
    if (prefault) {
      volatile uint8_t* touch = memory->base_;
      for (size_t offset = 0; offset < bytes; offset += kPage) {
        touch[offset] = 0;
      }
    }
    return memory;
  }

  uint8_t* base() override { return base_; }
  size_t size() const override { return size_; }
  bool host_accessible() const override { return true; }
  int device() const override { return -1; }
  absl::Status CopyOut(size_t offset, size_t bytes, void* dst) override {
    std::memcpy(dst, base_ + offset, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyIn(const void* src, size_t offset, size_t bytes) override {
    std::memcpy(base_ + offset, src, bytes);
    return absl::OkStatus();
  }

 private:
  HostMemory() = default;

  void* mapping_ = nullptr;
  size_t mapped_ = 0;
  size_t size_ = 0;
  uint8_t* base_ = nullptr;
};

absl::Status CheckLayout(const KvLayout& layout) {
  if (layout.num_layers <= 0 || layout.num_kv_heads <= 0 ||
      layout.head_dim <= 0 || layout.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout needs positive sizes: layers=", layout.num_layers,
        " kv_heads=", layout.num_kv_heads, " head_dim=", layout.head_dim,
        " block_size=", layout.block_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> BlocksIn(const KvLayout& layout, size_t bytes) {
  const size_t blocks = bytes / layout.BlockBytes();
  if (blocks == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV budget of ", bytes, " bytes holds no block of ",
                     layout.BlockBytes(), " bytes"));
  }
  if (blocks > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("KV budget holds too many blocks");
  }
  return blocks;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(
    const KvLayout& layout, size_t budget_bytes, bool prefault) {
  absl::Status status = CheckLayout(layout);
  if (!status.ok()) return status;
  absl::StatusOr<size_t> blocks = BlocksIn(layout, budget_bytes);
  if (!blocks.ok()) return blocks.status();
  auto memory = HostMemory::Create(*blocks * layout.BlockBytes(), prefault);
  if (!memory.ok()) return memory.status();
  return CreateIn(layout, *std::move(memory));
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::CreateIn(
    const KvLayout& layout, std::unique_ptr<KvBlockMemory> memory) {
  absl::Status status = CheckLayout(layout);
  if (!status.ok()) return status;
  absl::StatusOr<size_t> blocks = BlocksIn(layout, memory->size());
  if (!blocks.ok()) return blocks.status();
  std::unique_ptr<KvBlockPool> pool(
      new KvBlockPool(layout, static_cast<int>(*blocks)));
  pool->memory_ = std::move(memory);
  pool->base_ = pool->memory_->base();
  return pool;
}

absl::Status KvBlockPool::ReadBlock(int block, void* dst) {
  return memory_->CopyOut(static_cast<size_t>(block) * block_bytes_,
                          block_bytes_, dst);
}

absl::Status KvBlockPool::WriteBlock(int block, const void* src) {
  return memory_->CopyIn(src, static_cast<size_t>(block) * block_bytes_,
                         block_bytes_);
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::CreateUnbacked(
    const KvLayout& layout, int capacity) {
  if (capacity <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a pool needs at least one block, not ", capacity));
  }
  return std::unique_ptr<KvBlockPool>(new KvBlockPool(layout, capacity));
}

KvBlockPool::KvBlockPool(const KvLayout& layout, int capacity)
    : layout_(layout),
      capacity_(capacity),
      block_bytes_(layout.BlockBytes()),
      layer_bytes_(layout.LayerBytes()) {
  absl::MutexLock lock(&mu_);
  refcount_.assign(capacity, 0);
  allocations_.assign(capacity, 0);
  published_.resize(capacity);
  evictable_at_.resize(capacity, evictable_.end());
  free_.reserve(capacity);
  // Lowest ids on top of the stack, so allocation order is predictable in
  // tests.
  for (int i = capacity - 1; i >= 0; --i) free_.push_back(i);
}

int KvBlockPool::free_blocks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(free_.size() + evictable_.size());
}

int KvBlockPool::DropCached() {
  absl::MutexLock lock(&mu_);
  const int dropped = static_cast<int>(by_key_.size());
  for (const auto& [key, block] : by_key_) {
    if (refcount_[block] == 0) {
      evictable_.erase(evictable_at_[block]);
      evictable_at_[block] = evictable_.end();
      free_.push_back(block);
    }
    published_[block] = Published();
  }
  by_key_.clear();
  evictable_stored_ = 0;
  return dropped;
}

int KvBlockPool::EvictLocked() {
  if (evictable_.empty()) return -1;
  // The least recently released block the store holds, else the least recently
  // released one.
  auto victim = evictable_.begin();
  if (evictable_stored_ > 0) {
    while (!published_[*victim].stored) ++victim;
    --evictable_stored_;
  }
  const int block = *victim;
  evictable_.erase(victim);
  evictable_at_[block] = evictable_.end();
  by_key_.erase(published_[block].key);
  published_[block] = Published();
  ++evicted_;
  return block;
}

absl::StatusOr<int> KvBlockPool::Allocate() {
  absl::MutexLock lock(&mu_);
  int block = -1;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    block = EvictLocked();
  }
  if (block < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache is full (", capacity_, " blocks of ",
                     layout_.block_size, " tokens)"));
  }
  refcount_[block] = 1;
  ++allocations_[block];
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
  if (--refcount_[block] > 0) return;
  if (published_[block].key.empty()) {
    free_.push_back(block);
    return;
  }
  evictable_at_[block] = evictable_.insert(evictable_.end(), block);
  if (published_[block].stored) ++evictable_stored_;
}

uint64_t KvBlockPool::Allocations(int block) const {
  absl::MutexLock lock(&mu_);
  return allocations_[block];
}

bool KvBlockPool::InUse(int block) const {
  absl::MutexLock lock(&mu_);
  return block >= 0 && block < capacity_ &&
         (refcount_[block] > 0 || !published_[block].key.empty());
}

int KvBlockPool::RefCount(int block) const {
  absl::MutexLock lock(&mu_);
  return refcount_[block];
}

bool KvBlockPool::Publish(const std::string& key, int block) {
  absl::MutexLock lock(&mu_);
  if (block < 0 || block >= capacity_ || refcount_[block] <= 0) std::abort();
  if (key.empty()) return false;
  const std::string& current = published_[block].key;
  if (!current.empty()) return current == key;
  if (!by_key_.emplace(key, block).second) return false;
  published_[block].key = key;
  return true;
}

int KvBlockPool::Lookup(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  const int block = it->second;
  if (refcount_[block] == 0) {
    evictable_.erase(evictable_at_[block]);
    evictable_at_[block] = evictable_.end();
    if (published_[block].stored) --evictable_stored_;
  }
  ++refcount_[block];
  return block;
}

void KvBlockPool::MarkStored(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  Published& published = published_[it->second];
  if (published.stored) return;
  published.stored = true;
  if (refcount_[it->second] == 0) ++evictable_stored_;
}

int KvBlockPool::cached_blocks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(by_key_.size());
}

int64_t KvBlockPool::evicted_blocks() const {
  absl::MutexLock lock(&mu_);
  return evicted_;
}

}  // namespace longctx
