#include "memory_store/block_store.h"

#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace longctx {
namespace {

// Layout: column family "meta" maps key -> Meta (fixed 12 bytes: num_parts u32,
// total bytes u64, little-endian); column family "parts" maps key ‖ be32(part)
// -> bytes. Big-endian part numbers keep a block's parts adjacent and in order.
constexpr char kMetaFamily[] = "meta";
constexpr char kPartsFamily[] = "parts";

struct Meta {
  uint32_t num_parts = 0;
  uint64_t bytes = 0;
};

std::string EncodeMeta(const Meta& meta) {
  std::string out(12, '\0');
  std::memcpy(&out[0], &meta.num_parts, 4);
  std::memcpy(&out[4], &meta.bytes, 8);
  return out;
}

bool DecodeMeta(absl::string_view in, Meta* meta) {
  if (in.size() != 12) return false;
  std::memcpy(&meta->num_parts, in.data(), 4);
  std::memcpy(&meta->bytes, in.data() + 4, 8);
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
  absl::Status loaded = store->LoadStats();
  if (!loaded.ok()) return loaded;
  return store;
}

BlockStore::~BlockStore() {
  if (db_ == nullptr) return;
  db_->DestroyColumnFamilyHandle(meta_cf_);
  db_->DestroyColumnFamilyHandle(parts_cf_);
  db_->Close();
}

absl::Status BlockStore::LoadStats() {
  BlockStoreStats stats;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Meta meta;
    if (!DecodeMeta(absl::string_view(it->value().data(), it->value().size()),
                    &meta)) {
      return absl::DataLossError(
          absl::StrCat("malformed block metadata in ", options_.path));
    }
    ++stats.blocks;
    stats.bytes += static_cast<int64_t>(meta.bytes);
  }
  absl::Status status = FromRocks(it->status(), "scanning block metadata");
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  stats_ = stats;
  return absl::OkStatus();
}

absl::Status BlockStore::Put(absl::string_view key,
                             const std::vector<std::string>& parts) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  if (parts.empty() || parts.size() > static_cast<size_t>(kMaxParts)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block has ", parts.size(), " parts; expected 1 to ", kMaxParts));
  }
  Meta meta;
  meta.num_parts = static_cast<uint32_t>(parts.size());
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < parts.size(); ++i) {
    batch.Put(parts_cf_, PartKey(key, static_cast<uint32_t>(i)), parts[i]);
    meta.bytes += parts[i].size();
  }
  absl::MutexLock lock(&mu_);
  // A replaced block with more parts than the new one leaves no stale parts
  // behind.
  Meta old;
  std::string old_value;
  bool existed = db_->Get(rocksdb::ReadOptions(), meta_cf_,
                          rocksdb::Slice(key.data(), key.size()), &old_value)
                     .ok() &&
                 DecodeMeta(old_value, &old);
  for (uint32_t i = meta.num_parts; existed && i < old.num_parts; ++i) {
    batch.Delete(parts_cf_, PartKey(key, i));
  }
  batch.Put(meta_cf_, rocksdb::Slice(key.data(), key.size()), EncodeMeta(meta));
  rocksdb::WriteOptions write_options;
  write_options.sync = options_.sync_writes;
  status = FromRocks(db_->Write(write_options, &batch), "writing a block");
  if (!status.ok()) return status;
  if (existed) {
    --stats_.blocks;
    stats_.bytes -= static_cast<int64_t>(old.bytes);
  }
  ++stats_.blocks;
  stats_.bytes += static_cast<int64_t>(meta.bytes);
  return absl::OkStatus();
}

absl::StatusOr<int> BlockStore::NumParts(absl::string_view key) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  std::string value;
  status = FromRocks(db_->Get(rocksdb::ReadOptions(), meta_cf_,
                              rocksdb::Slice(key.data(), key.size()), &value),
                     "block not found");
  if (!status.ok()) return status;
  Meta meta;
  if (!DecodeMeta(value, &meta)) {
    return absl::DataLossError("malformed block metadata");
  }
  return static_cast<int>(meta.num_parts);
}

absl::Status BlockStore::GetPart(absl::string_view key, int part,
                                 std::string* value) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  if (part < 0 || part >= kMaxParts) {
    return absl::InvalidArgumentError(
        absl::StrCat("part ", part, " out of range"));
  }
  return FromRocks(db_->Get(rocksdb::ReadOptions(), parts_cf_,
                            PartKey(key, static_cast<uint32_t>(part)), value),
                   absl::StrCat("block part ", part, " not found"));
}

std::vector<bool> BlockStore::Contains(absl::Span<const std::string> keys) {
  std::vector<rocksdb::Slice> slices;
  std::vector<bool> present(keys.size(), false);
  std::vector<size_t> asked;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].size() != kKeySize) continue;
    slices.emplace_back(keys[i]);
    asked.push_back(i);
  }
  std::vector<rocksdb::PinnableSlice> values(slices.size());
  std::vector<rocksdb::Status> statuses(slices.size());
  if (!slices.empty()) {
    db_->MultiGet(rocksdb::ReadOptions(), meta_cf_, slices.size(),
                  slices.data(), values.data(), statuses.data());
  }
  for (size_t j = 0; j < asked.size(); ++j)
    present[asked[j]] = statuses[j].ok();
  return present;
}

absl::StatusOr<int64_t> BlockStore::Delete(absl::Span<const std::string> keys) {
  absl::MutexLock lock(&mu_);
  rocksdb::WriteBatch batch;
  int64_t deleted = 0;
  int64_t bytes = 0;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& key : keys) {
    if (key.size() != kKeySize || !seen.insert(key).second) continue;
    std::string value;
    Meta meta;
    if (!db_->Get(rocksdb::ReadOptions(), meta_cf_, key, &value).ok() ||
        !DecodeMeta(value, &meta)) {
      continue;
    }
    for (uint32_t i = 0; i < meta.num_parts; ++i) {
      batch.Delete(parts_cf_, PartKey(key, i));
    }
    batch.Delete(meta_cf_, key);
    ++deleted;
    bytes += static_cast<int64_t>(meta.bytes);
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = options_.sync_writes;
  absl::Status status =
      FromRocks(db_->Write(write_options, &batch), "deleting blocks");
  if (!status.ok()) return status;
  stats_.blocks -= deleted;
  stats_.bytes -= bytes;
  return deleted;
}

BlockStoreStats BlockStore::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace longctx
