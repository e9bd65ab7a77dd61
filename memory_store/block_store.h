// BlockStore: KV blocks on local disk in RocksDB.
//
// A block is addressed by a 32-byte key and made of parts (part 0 the block
// header, parts 1..L its layers; the store does not interpret them). A key,
// once stored, keeps its block until it is deleted or evicted: Put never
// replaces one (kvblock/block_keys.h: keys are shared between clients, and
// the first block under a key is the one every later reader gets). Large
// parts go to RocksDB's integrated blob files so the LSM tree stays small.
// Writes go through the write-ahead log: a block whose Put returned OK survives
// the process being killed and, with sync_writes (the default), the machine
// losing power.
#ifndef LONGCTX_MEMORY_STORE_BLOCK_STORE_H_
#define LONGCTX_MEMORY_STORE_BLOCK_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "rocksdb/db.h"

namespace longctx {

// BlockStoreOptions configures a BlockStore.
struct BlockStoreOptions {
  // Folder of the RocksDB database; created if missing. Required.
  std::string path;
  // Values of at least this many bytes go to blob files. Default: 4 KiB.
  uint64_t min_blob_size = 4096;
  // Target size of one blob file. Default: 256 MiB.
  uint64_t blob_file_size = 256ull << 20;
  // Acknowledge a Put or Delete only once the write-ahead log holding it is
  // on disk (fsync), so it survives power loss, not only a killed process.
  // Concurrent writers share each fsync (group commit). Default: true.
  bool sync_writes = true;
  // Most bytes of block values kept; Put evicts the least recently used blocks
  // (written or read longest ago) to stay under it. 0 means no limit. Default:
  // 0.
  uint64_t max_bytes = 0;
  // Have RocksDB verify its own CRC32C of what GetPart reads. Off by default:
  // a stored block carries a checksum per part (kv_block_format.h) that every
  // reader verifies end to end (disk, this process and the network), and
  // Debian's RocksDB computes CRC32C in software (about 1 GB/s, the largest
  // cost of a read). Default: false.
  bool verify_read_checksums = false;
};

// BlockStoreStats are the store's counters.
struct BlockStoreStats {
  int64_t blocks = 0;     // Blocks stored.
  int64_t bytes = 0;      // Sum of the sizes of their parts.
  int64_t evictions = 0;  // Blocks evicted for the byte budget since Open.
  // Puts since Open of a block whose key was stored with another part 0, and
  // so refused (ALREADY_EXISTS).
  int64_t put_conflicts = 0;
  // fsyncs of the write-ahead log since Open (sync_writes): fewer than the
  // writes when concurrent writers shared them.
  int64_t wal_syncs = 0;
};

// BlockStore is thread-safe.
class BlockStore {
 public:
  static constexpr size_t kKeySize = 32;
  // Most parts in a block (a header and one part per layer of any real model).
  static constexpr int kMaxParts = 4096;

  // Open opens or creates the store at options.path. Returns
  // FAILED_PRECONDITION naming the path when it cannot be created or written,
  // or when another process holds it open.
  static absl::StatusOr<std::unique_ptr<BlockStore>> Open(
      const BlockStoreOptions& options);

  ~BlockStore();

  // Put stores a block atomically (all parts or none) under a key that holds
  // none, and evicts least recently used blocks in the same atomic write when
  // the budget requires. A key that is stored already keeps its block: a Put
  // with the same part count and the same part 0 (the block's header, which
  // carries a checksum of every other part) is the same block and returns OK
  // without writing (*written false; counts as a use for eviction); any other
  // returns ALREADY_EXISTS and is counted in put_conflicts. *written (may be
  // null) says whether this call stored the block. INVALID_ARGUMENT for a key
  // that is not kKeySize bytes or a part count outside [1, kMaxParts];
  // RESOURCE_EXHAUSTED for a block larger than the whole budget.
  absl::Status Put(absl::string_view key, const std::vector<std::string>& parts,
                   bool* written = nullptr);

  // NumParts returns the block's part count, or NOT_FOUND. It counts as a use
  // of the block for eviction (a Get starts with it).
  absl::StatusOr<int> NumParts(absl::string_view key);

  // GetPart reads one part of a block into *value. NOT_FOUND if the block or
  // the part is absent. RocksDB verifies its CRC32C of the part when
  // options().verify_read_checksums is set; the second form says it per call
  // (DATA_LOSS on a mismatch).
  absl::Status GetPart(absl::string_view key, int part, std::string* value);
  absl::Status GetPart(absl::string_view key, int part, std::string* value,
                       bool verify_checksums);

  // Contains says for each key whether a block is stored under it.
  std::vector<bool> Contains(absl::Span<const std::string> keys);

  // Delete removes the blocks of `keys` and returns how many existed.
  absl::StatusOr<int64_t> Delete(absl::Span<const std::string> keys);

  // Flush writes what is still only in memory (and the write-ahead log) to
  // table and blob files, and waits for it.
  absl::Status Flush();

  const BlockStoreOptions& options() const { return options_; }

  // Stats returns the current counters.
  BlockStoreStats Stats() const;

 private:
  // Entry is what the store keeps in memory about a stored block.
  struct Entry {
    uint32_t num_parts = 0;
    uint64_t bytes = 0;
    uint64_t last_use = 0;  // Position in lru_.
  };

  explicit BlockStore(const BlockStoreOptions& options);
  // Put and Delete without waiting for durability; *write is the write whose
  // sync makes the result durable (WaitDurable).
  absl::Status PutUnsynced(absl::string_view key,
                           const std::vector<std::string>& parts, bool* written,
                           uint64_t* write) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<int64_t> DeleteUnsynced(absl::Span<const std::string> keys,
                                         uint64_t* write)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Numbers a write to the database (called right after it, under mu_, so
  // numbers follow the log's order), or returns the last number.
  uint64_t NoteWrite() ABSL_LOCKS_EXCLUDED(sync_mu_);
  uint64_t LastWrite() ABSL_LOCKS_EXCLUDED(sync_mu_);
  // Returns once writes up to `write` are synced to disk, syncing the log
  // itself unless another caller's sync covers them (group commit).
  absl::Status WaitDurable(uint64_t write) ABSL_LOCKS_EXCLUDED(mu_, sync_mu_);
  absl::Status LoadIndex();
  // Moves `key` to the most recently used end; persists the order in its meta.
  void TouchLocked(const std::string& key, Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BlockStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* parts_cf_ =
      nullptr;  // Owned by db_ until closed.
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;

  // Serializes writers so that the index and counters match the database.
  mutable absl::Mutex mu_;
  BlockStoreStats stats_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Entry> index_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> lru_ ABSL_GUARDED_BY(mu_);  // last_use -> key
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;

  // Group commit. Lock order: mu_, then sync_mu_.
  mutable absl::Mutex sync_mu_ ABSL_ACQUIRED_AFTER(mu_);
  uint64_t writes_ ABSL_GUARDED_BY(sync_mu_) = 0;  // Writes numbered so far.
  uint64_t synced_ ABSL_GUARDED_BY(sync_mu_) = 0;  // Durable up to this one.
  bool syncing_ ABSL_GUARDED_BY(sync_mu_) = false;
  int64_t wal_syncs_ ABSL_GUARDED_BY(sync_mu_) = 0;
};

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_BLOCK_STORE_H_
