#include "engine/kv_offloader.h"

#include <atomic>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "kvblock/kv_block_format.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

prometheus::Counter* NewCounter(prometheus::Registry* registry,
                                const char* name, const char* help) {
  if (registry == nullptr) return nullptr;
  return &prometheus::BuildCounter()
              .Name(name)
              .Help(help)
              .Register(*registry)
              .Add({});
}

void Add(prometheus::Counter* counter, double value) {
  if (counter != nullptr) counter->Increment(value);
}

}  // namespace

KvOffloader::KvOffloader(StoreClient* client, KvBlockPool* pool,
                         const Hash128& fingerprint,
                         const KvOffloaderOptions& options,
                         prometheus::Registry* registry)
    : client_(client),
      pool_(pool),
      fingerprint_(fingerprint),
      options_(options) {
  offloaded_blocks_ = NewCounter(registry, "longctx_offload_blocks_total",
                                 "KV blocks written to the memory store.");
  offloaded_bytes_ =
      NewCounter(registry, "longctx_offload_bytes_total",
                 "Bytes of KV blocks written to the memory store.");
  offload_seconds_ =
      NewCounter(registry, "longctx_offload_seconds_total",
                 "Seconds spent writing KV blocks to the store.");
  offload_dropped_ =
      NewCounter(registry, "longctx_offload_dropped_blocks_total",
                 "KV blocks not offloaded because the offload queue was full.");
  offload_failed_ = NewCounter(registry, "longctx_offload_failed_blocks_total",
                               "KV blocks whose write to the store failed.");
  offload_conflicts_ = NewCounter(
      registry, "longctx_offload_conflicts_total",
      "KV blocks not offloaded because the store holds another block under "
      "their key (it is never replaced).");
  restored_blocks_ = NewCounter(registry, "longctx_restore_blocks_total",
                                "KV blocks restored from the memory store.");
  restored_bytes_ = NewCounter(registry, "longctx_restore_bytes_total",
                               "Bytes of KV blocks restored from the store.");
  restore_seconds_ = NewCounter(registry, "longctx_restore_seconds_total",
                                "Seconds spent restoring KV blocks.");
  restore_corrupt_ = NewCounter(
      registry, "longctx_restore_corrupt_blocks_total",
      "Stored KV blocks that failed verification and were recomputed.");
  thread_ = std::thread([this] { Loop(); });
}

KvOffloader::~KvOffloader() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool KvOffloader::Offload(const BlockKey& id, int block, int token_count) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(queue_.size()) >= options_.max_queued_blocks) {
    Add(offload_dropped_, 1);
    return false;
  }
  pool_->Ref(block);
  queue_.push_back(Job{id, block, token_count});
  return true;
}

bool KvOffloader::OffloadCopy(const BlockKey& id, int block, int token_count) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(queue_.size()) >= options_.max_queued_blocks) {
    Add(offload_dropped_, 1);
    return false;
  }
  std::vector<uint8_t> copy(pool_->layout().BlockBytes());
  absl::Status status = pool_->ReadBlock(block, copy.data());
  if (!status.ok()) {
    Add(offload_failed_, 1);
    Log(LogLevel::kWarning, "offload of a KV block failed: %s",
        std::string(status.message()));
    return false;
  }
  queue_.push_back(Job{id, block, token_count, std::move(copy)});
  return true;
}

void KvOffloader::WaitIdle() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && !busy_;
  };
  mu_.Await(absl::Condition(&idle));
}

void KvOffloader::Loop() {
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) {
        // Shutting down: blocks not yet written are dropped (a later request
        // recomputes them) rather than holding the process for the store.
        for (const Job& dropped : queue_) {
          if (dropped.copy.empty()) pool_->Unref(dropped.block);
        }
        Add(offload_dropped_, static_cast<double>(queue_.size()));
        queue_.clear();
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    const absl::Time start = absl::Now();
    const uint8_t* bytes = job.copy.data();
    absl::Status status;
    if (job.copy.empty()) {
      if (pool_->host_accessible()) {
        bytes = pool_->Data(job.block);
      } else {
        // A device's block leaves through host memory (the device's copy
        // stream, beside the computation); the reference keeps it until then.
        staging_.resize(pool_->layout().BlockBytes());
        status = pool_->ReadBlock(job.block, staging_.data());
        bytes = staging_.data();
      }
    }
    absl::StatusOr<std::vector<std::string>> parts =
        status.ok() ? EncodeKvBlock(pool_->layout(), fingerprint_, job.id,
                                    job.token_count, bytes)
                    : absl::StatusOr<std::vector<std::string>>(status);
    if (job.copy.empty()) pool_->Unref(job.block);
    status = parts.status();
    if (status.ok()) status = client_->Put(job.id.key, *parts);
    if (status.ok()) {
      // The pool's copy (if it still caches one) may now be dropped first.
      pool_->MarkStored(job.id.key);
      Add(offloaded_blocks_, 1);
      double bytes = 0;
      for (const std::string& part : *parts) bytes += part.size();
      Add(offloaded_bytes_, bytes);
    } else if (absl::IsAlreadyExists(status)) {
      // Another block under this key came first: the same prefix computed
      // with other rounding (another device), or a forgery that the reader's
      // checks refuse. Either way the store keeps what it has.
      Add(offload_conflicts_, 1);
    } else {
      Add(offload_failed_, 1);
      Log(LogLevel::kWarning, "offload of a KV block failed: %s",
          std::string(status.message()));
    }
    Add(offload_seconds_, absl::ToDoubleSeconds(absl::Now() - start));
    absl::MutexLock lock(&mu_);
    busy_ = false;
  }
}

int KvOffloader::Restore(absl::Span<const BlockKey> ids,
                         absl::Span<const int> blocks) {
  if (ids.empty()) return 0;
  const absl::Time start = absl::Now();
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (const BlockKey& id : ids) keys.push_back(id.key);
  const std::vector<bool> present = client_->Contains(keys);
  int candidates = 0;
  while (candidates < static_cast<int>(keys.size()) && present[candidates]) {
    ++candidates;
  }
  // A pipeline: fetcher threads read blocks from the store (the next block is
  // on the wire while the previous one is checked), the calling thread
  // verifies each fetched block and copies it into its pool block. At most
  // `window` fetched blocks wait to be verified, which bounds the memory a
  // restore holds. What counts is the leading run of blocks that succeeded.
  std::vector<absl::Status> results(candidates);
  std::vector<double> sizes(candidates, 0);
  struct Fetched {
    int index = -1;
    absl::StatusOr<StoredBlock> block;
    // Received straight into its pool block (a host pool, a shard with a
    // local socket): its header, and how the read went.
    bool in_place = false;
    std::string head;
    absl::Status read;
  };
  // Each shard's blocks are fetched in order by its own streams, so shards
  // serve in parallel while one shard is never asked for more at once than
  // restore_streams_per_shard (on a machine the store shares, more streams to
  // one shard compete for the same cores: see docs/BENCHMARKS.md).
  std::vector<std::vector<int>> by_shard(client_->num_shards());
  for (int i = 0; i < candidates; ++i) {
    by_shard[client_->ShardOf(keys[i])].push_back(i);
  }
  std::vector<int> streams(by_shard.size());
  std::vector<std::unique_ptr<std::atomic<size_t>>> next(by_shard.size());
  int fetchers = 0;
  for (size_t shard = 0; shard < by_shard.size(); ++shard) {
    next[shard] = std::make_unique<std::atomic<size_t>>(0);
    const int per_shard =
        std::max(1, client_->HasLocalSocket(static_cast<int>(shard))
                        ? options_.restore_streams_per_local_shard
                        : options_.restore_streams_per_shard);
    streams[shard] = std::min<int>(per_shard, by_shard[shard].size());
    fetchers += streams[shard];
  }
  const size_t window = 2 * static_cast<size_t>(fetchers);
  // Blocks from the first one that failed on are not fetched or verified: the
  // restored prefix ends before it anyway (and a shard gone since Contains
  // would cost a timeout per block).
  std::atomic<int> first_failed{candidates};
  auto failed = [&](int i) {
    int seen = first_failed.load();
    while (i < seen && !first_failed.compare_exchange_weak(seen, i)) {
    }
  };
  absl::Mutex mu;
  std::deque<Fetched> fetched;  // Guarded by mu.
  auto fetch = [&](size_t shard) {
    const std::vector<int>& mine = by_shard[shard];
    // Received straight into the pool block: a host pool, a shard with a
    // local socket.
    const bool in_place = pool_->host_accessible() &&
                          client_->HasLocalSocket(static_cast<int>(shard));
    for (size_t k = (*next[shard])++; k < mine.size(); k = (*next[shard])++) {
      const int i = mine[k];
      Fetched item{i, absl::CancelledError("a block before it failed")};
      item.in_place = in_place;
      if (i < first_failed.load()) {
        if (item.in_place) {
          item.read = client_->ReadInto(
              keys[i], &item.head,
              absl::MakeSpan(reinterpret_cast<char*>(pool_->Data(blocks[i])),
                             pool_->layout().BlockBytes()));
        } else {
          item.block = client_->Read(keys[i]);
        }
      } else {
        item.read = item.block.status();
      }
      absl::MutexLock lock(&mu);
      auto room = [&]() { return fetched.size() < window; };
      mu.Await(absl::Condition(&room));
      fetched.push_back(std::move(item));
    }
  };
  std::vector<uint8_t> restore_staging;  // For a device's pool.
  std::vector<std::thread> threads;
  for (size_t shard = 0; shard < by_shard.size(); ++shard) {
    for (int t = 0; t < streams[shard]; ++t) threads.emplace_back(fetch, shard);
  }
  for (int done = 0; done < candidates; ++done) {
    Fetched item;
    {
      absl::MutexLock lock(&mu);
      auto ready = [&]() { return !fetched.empty(); };
      mu.Await(absl::Condition(&ready));
      item = std::move(fetched.front());
      fetched.pop_front();
    }
    const int i = item.index;
    if (item.in_place) {
      // Verified where it landed; a block that fails is never counted.
      absl::StatusOr<KvBlockHeader> header =
          item.read.ok()
              ? VerifyKvBlockInPlace(item.head, pool_->layout(), fingerprint_,
                                     ids[i], pool_->Data(blocks[i]))
              : absl::StatusOr<KvBlockHeader>(item.read);
      if (header.ok() && header->token_count != pool_->layout().block_size) {
        header = absl::DataLossError("stored block is not full");
      }
      if (header.ok() && i > first_failed.load()) {
        header = absl::CancelledError("a block before it failed");
      }
      results[i] = header.status();
      if (!header.ok() && !absl::IsCancelled(header.status())) failed(i);
      sizes[i] =
          static_cast<double>(item.head.size() + pool_->layout().BlockBytes());
      continue;
    }
    if (!item.block.ok()) {
      results[i] = item.block.status();
      failed(i);
      continue;
    }
    if (i > first_failed.load()) {
      results[i] = absl::CancelledError("a block before it failed");
      continue;
    }
    // A host pool's block is decoded in place; a device's through host
    // memory, copied in only once it verified.
    const bool in_place = pool_->host_accessible();
    if (!in_place) restore_staging.resize(pool_->layout().BlockBytes());
    // The block is verified as it is copied from the received buffers into
    // its pool block, which counts as restored only if all of it verified.
    absl::StatusOr<KvBlockHeader> header = DecodeKvBlockPiecesInto(
        item.block->Parts(), pool_->layout(), fingerprint_, ids[i],
        in_place ? pool_->Data(blocks[i]) : restore_staging.data());
    if (header.ok() && header->token_count != pool_->layout().block_size) {
      header = absl::DataLossError("stored block is not full");
    }
    if (header.ok() && !in_place) {
      absl::Status copied =
          pool_->WriteBlock(blocks[i], restore_staging.data());
      if (!copied.ok()) header = copied;
    }
    results[i] = header.status();
    if (!header.ok()) failed(i);
    sizes[i] = static_cast<double>(item.block->size());
  }
  for (std::thread& t : threads) t.join();

  int restored = 0;
  while (restored < candidates && results[restored].ok()) {
    Add(restored_bytes_, sizes[restored]);
    Add(restored_blocks_, 1);
    ++restored;
  }
  if (restored < candidates && !absl::IsNotFound(results[restored]) &&
      !absl::IsUnavailable(results[restored]) &&
      !absl::IsDeadlineExceeded(results[restored])) {
    // Present but rejected: corrupt, another model, another layout.
    Add(restore_corrupt_, 1);
    Log(LogLevel::kWarning, "stored KV block rejected, recomputing: %s",
        std::string(results[restored].message()));
  }
  Add(restore_seconds_, absl::ToDoubleSeconds(absl::Now() - start));
  return restored;
}

}  // namespace longctx
