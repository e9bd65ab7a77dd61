#include "memory_store/block_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace longctx {
namespace {

// Layout: column family "meta" maps key -> Meta (20 bytes, little-endian:
// num_parts u32, total bytes u64, last use u64; 12-byte records of the first
// format have no last use); column family "parts" maps key ‖ be32(part) ->
// bytes. Big-endian part numbers keep a block's parts adjacent and in order.
// The last-use numbers persist the eviction order across restarts.
constexpr char kMetaFamily[] = "meta";
constexpr char kPartsFamily[] = "parts";

struct Meta {
  uint32_t num_parts = 0;
  uint64_t bytes = 0;
  uint64_t last_use = 0;
};

std::string EncodeMeta(const Meta& meta) {
  std::string out(20, '\0');
  std::memcpy(&out[0], &meta.num_parts, 4);
  std::memcpy(&out[4], &meta.bytes, 8);
  std::memcpy(&out[12], &meta.last_use, 8);
  return out;
}

bool DecodeMeta(absl::string_view in, Meta* meta) {
  if (in.size() != 12 && in.size() != 20) return false;
  std::memcpy(&meta->num_parts, in.data(), 4);
  std::memcpy(&meta->bytes, in.data() + 4, 8);
  meta->last_use = 0;
  if (in.size() == 20) std::memcpy(&meta->last_use, in.data() + 12, 8);
  return true;
}

std::string PartKey(absl::string_view key, uint32_t part) {
  std::string out(key);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((part >> shift) & 0xff));
  }
  return out;
}

absl::Status FromRocks(const rocksdb::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  if (status.IsNotFound()) return absl::NotFoundError(what);
  if (status.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(what, ": ", status.ToString()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", status.ToString()));
}

absl::Status CheckKey(absl::string_view key) {
  if (key.size() != BlockStore::kKeySize) {
    return absl::InvalidArgumentError(absl::StrCat("block key has ", key.size(),
                                                   " bytes; expected ",
                                                   BlockStore::kKeySize));
  }
  return absl::OkStatus();
}

}  // namespace

BlockStore::BlockStore(const BlockStoreOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<BlockStore>> BlockStore::Open(
    const BlockStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("block store path is empty (--data_dir)");
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;

  rocksdb::ColumnFamilyOptions meta_options;
  rocksdb::ColumnFamilyOptions parts_options;
  parts_options.enable_blob_files = true;
  parts_options.min_blob_size = options.min_blob_size;
  parts_options.blob_file_size = options.blob_file_size;
  parts_options.enable_blob_garbage_collection = true;

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, meta_options},
      {kMetaFamily, meta_options},
      {kPartsFamily, parts_options},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status =
      rocksdb::DB::Open(db_options, options.path, families, &handles, &db);
  if (!status.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the block store in ", options.path, ": ",
                     status.ToString()));
  }
  std::unique_ptr<BlockStore> store(new BlockStore(options));
  store->db_.reset(db);
  // handles[0] (default) is unused; RocksDB requires it to be open.
  store->db_->DestroyColumnFamilyHandle(handles[0]);
  store->meta_cf_ = handles[1];
  store->parts_cf_ = handles[2];
  absl::Status loaded = store->LoadIndex();
  if (!loaded.ok()) return loaded;
  return store;
}

BlockStore::~BlockStore() {
  if (db_ == nullptr) return;
  db_->DestroyColumnFamilyHandle(meta_cf_);
  db_->DestroyColumnFamilyHandle(parts_cf_);
  db_->Close();
}

absl::Status BlockStore::LoadIndex() {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  // Blocks with equal persisted last use (e.g. of the first format) keep the
  // order of their keys: deterministic, if arbitrary.
  std::vector<std::pair<uint64_t, std::string>> order;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Meta meta;
    if (!DecodeMeta(absl::string_view(it->value().data(), it->value().size()),
                    &meta)) {
      return absl::DataLossError(
          absl::StrCat("malformed block metadata in ", options_.path));
    }
    std::string key(it->key().data(), it->key().size());
    index_[key] = Entry{meta.num_parts, meta.bytes, 0};
    order.emplace_back(meta.last_use, std::move(key));
    ++stats_.blocks;
    stats_.bytes += static_cast<int64_t>(meta.bytes);
  }
  absl::Status status = FromRocks(it->status(), "scanning block metadata");
  if (!status.ok()) return status;
  std::sort(order.begin(), order.end());
  for (auto& [last_use, key] : order) {
    index_[key].last_use = ++clock_;
    lru_[clock_] = std::move(key);
  }
  return absl::OkStatus();
}

void BlockStore::TouchLocked(const std::string& key, Entry& entry) {
  lru_.erase(entry.last_use);
  entry.last_use = ++clock_;
  lru_[entry.last_use] = key;
  // Persist the new position; losing it (a crash) only ages the block.
  Meta meta{entry.num_parts, entry.bytes, entry.last_use};
  db_->Put(rocksdb::WriteOptions(), meta_cf_, key, EncodeMeta(meta));
}

absl::Status BlockStore::Put(absl::string_view key,
                             const std::vector<std::string>& parts,
                             bool* written) {
  uint64_t write = 0;
  absl::Status status = PutUnsynced(key, parts, written, &write);
  if (!status.ok() || !options_.sync_writes) return status;
  return WaitDurable(write);
}

absl::Status BlockStore::PutUnsynced(absl::string_view key,
                                     const std::vector<std::string>& parts,
                                     bool* written, uint64_t* write) {
  if (written != nullptr) *written = false;
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  if (parts.empty() || parts.size() > static_cast<size_t>(kMaxParts)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block has ", parts.size(), " parts; expected 1 to ", kMaxParts));
  }
  const std::string name(key);
  Entry entry;
  entry.num_parts = static_cast<uint32_t>(parts.size());
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < parts.size(); ++i) {
    batch.Put(parts_cf_, PartKey(key, static_cast<uint32_t>(i)), parts[i]);
    entry.bytes += parts[i].size();
  }
  if (options_.max_bytes > 0 && entry.bytes > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "block of ", entry.bytes, " bytes exceeds the store's budget of ",
        options_.max_bytes, " bytes (--max_bytes)"));
  }
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(name); it != index_.end()) {
    // Put if absent, decided under the writers' lock so that of two racing
    // Puts of one key exactly one writes.
    std::string stored_header;
    status = FromRocks(db_->Get(rocksdb::ReadOptions(), parts_cf_,
                                PartKey(key, 0), &stored_header),
                       "reading a stored block's part 0");
    if (!status.ok()) return status;
    if (it->second.num_parts != entry.num_parts || stored_header != parts[0]) {
      ++stats_.put_conflicts;
      return absl::AlreadyExistsError(
          "another block is stored under this key; a stored block is never "
          "replaced");
    }
    TouchLocked(it->first, it->second);
    // The same block, perhaps written by a racing Put not yet durable: this
    // one is acknowledged once that write is.
    *write = LastWrite();
    return absl::OkStatus();
  }
  const uint64_t kept = static_cast<uint64_t>(stats_.bytes);
  // Evict least recently used blocks, in the same atomic write, until it fits.
  std::vector<std::string> evicted;
  uint64_t evicted_bytes = 0;
  if (options_.max_bytes > 0) {
    for (auto it = lru_.begin();
         it != lru_.end() &&
         kept - evicted_bytes + entry.bytes > options_.max_bytes;
         ++it) {
      const Entry& victim = index_.at(it->second);
      for (uint32_t i = 0; i < victim.num_parts; ++i) {
        batch.Delete(parts_cf_, PartKey(it->second, i));
      }
      batch.Delete(meta_cf_, it->second);
      evicted.push_back(it->second);
      evicted_bytes += victim.bytes;
    }
  }
  entry.last_use = ++clock_;
  batch.Put(meta_cf_, rocksdb::Slice(key.data(), key.size()),
            EncodeMeta(Meta{entry.num_parts, entry.bytes, entry.last_use}));
  // Written to the log (the OS's cache) now, made durable by WaitDurable
  // outside the lock, where concurrent writers share one fsync.
  status =
      FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "writing a block");
  if (!status.ok()) return status;
  *write = NoteWrite();
  for (const std::string& victim : evicted) {
    auto it = index_.find(victim);
    lru_.erase(it->second.last_use);
    stats_.bytes -= static_cast<int64_t>(it->second.bytes);
    --stats_.blocks;
    ++stats_.evictions;
    index_.erase(it);
  }
  index_[name] = entry;
  lru_[entry.last_use] = name;
  ++stats_.blocks;
  stats_.bytes += static_cast<int64_t>(entry.bytes);
  if (written != nullptr) *written = true;
  return absl::OkStatus();
}

absl::StatusOr<int> BlockStore::NumParts(absl::string_view key) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  auto it = index_.find(std::string(key));
  if (it == index_.end()) return absl::NotFoundError("block not found");
  TouchLocked(it->first, it->second);
  return static_cast<int>(it->second.num_parts);
}

absl::Status BlockStore::GetPart(absl::string_view key, int part,
                                 std::string* value) {
  return GetPart(key, part, value, options_.verify_read_checksums);
}

absl::Status BlockStore::GetPart(absl::string_view key, int part,
                                 std::string* value, bool verify_checksums) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  if (part < 0 || part >= kMaxParts) {
    return absl::InvalidArgumentError(
        absl::StrCat("part ", part, " out of range"));
  }
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = verify_checksums;
  return FromRocks(db_->Get(read_options, parts_cf_,
                            PartKey(key, static_cast<uint32_t>(part)), value),
                   absl::StrCat("block part ", part, " not found"));
}

std::vector<bool> BlockStore::Contains(absl::Span<const std::string> keys) {
  absl::MutexLock lock(&mu_);
  std::vector<bool> present(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    present[i] = index_.contains(keys[i]);
  return present;
}

absl::StatusOr<int64_t> BlockStore::Delete(absl::Span<const std::string> keys) {
  uint64_t write = 0;
  absl::StatusOr<int64_t> deleted = DeleteUnsynced(keys, &write);
  if (!deleted.ok() || !options_.sync_writes) return deleted;
  absl::Status status = WaitDurable(write);
  if (!status.ok()) return status;
  return deleted;
}

absl::StatusOr<int64_t> BlockStore::DeleteUnsynced(
    absl::Span<const std::string> keys, uint64_t* write) {
  absl::MutexLock lock(&mu_);
  rocksdb::WriteBatch batch;
  std::vector<std::string> deleted;
  for (const std::string& key : keys) {
    auto it = index_.find(key);
    if (it == index_.end() ||
        std::find(deleted.begin(), deleted.end(), key) != deleted.end()) {
      continue;
    }
    for (uint32_t i = 0; i < it->second.num_parts; ++i) {
      batch.Delete(parts_cf_, PartKey(key, i));
    }
    batch.Delete(meta_cf_, key);
    deleted.push_back(key);
  }
  absl::Status status =
      FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "deleting blocks");
  if (!status.ok()) return status;
  *write = NoteWrite();
  for (const std::string& key : deleted) {
    auto it = index_.find(key);
    lru_.erase(it->second.last_use);
    stats_.bytes -= static_cast<int64_t>(it->second.bytes);
    --stats_.blocks;
    index_.erase(it);
  }
  return static_cast<int64_t>(deleted.size());
}

absl::Status BlockStore::Flush() {
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  return FromRocks(db_->Flush(flush_options, {parts_cf_, meta_cf_}),
                   "flushing the store");
}

BlockStoreStats BlockStore::Stats() const {
  BlockStoreStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
  }
  absl::MutexLock lock(&sync_mu_);
  stats.wal_syncs = wal_syncs_;
  return stats;
}

uint64_t BlockStore::NoteWrite() {
  absl::MutexLock lock(&sync_mu_);
  return ++writes_;
}

uint64_t BlockStore::LastWrite() {
  absl::MutexLock lock(&sync_mu_);
  return writes_;
}

absl::Status BlockStore::WaitDurable(uint64_t write) {
  absl::MutexLock lock(&sync_mu_);
  while (synced_ < write) {
    if (syncing_) {
      // Another writer's fsync is under way; it may cover this write too.
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_) {
        return !syncing_;
      };
      sync_mu_.Await(absl::Condition(&done));
      continue;
    }
    // Lead a sync of every write made so far: the writers that arrive while
    // it runs wait for it or the next one, so N concurrent Puts cost about
    // two fsyncs, not N.
    syncing_ = true;
    const uint64_t target = writes_;
    sync_mu_.Unlock();
    const rocksdb::Status synced = db_->SyncWAL();
    sync_mu_.Lock();
    syncing_ = false;
    if (!synced.ok()) {
      return absl::InternalError(
          absl::StrCat("syncing the write-ahead log: ", synced.ToString()));
    }
    synced_ = std::max(synced_, target);
    ++wal_syncs_;
  }
  return absl::OkStatus();
}

}  // namespace longctx
