// KvOffloader: moves a worker's KV blocks to and from the memory store.
//
// Offload: completed blocks are written behind the computation. Offload() only
// queues (it takes a reference on the pool block, dropped once written); a
// background thread encodes and stores them. A full queue drops the block
// rather than wait: decode never blocks on the store, and drops are counted.
// A stored block is marked so in the pool's prefix cache (MarkStored), which
// then drops it before blocks the store lacks.
//
// Restore: a new request's prompt blocks that the store holds are read back
// into the sequence's own blocks, in order, until the first one that is
// missing, does not verify (checksum, fingerprint, layout, key and token
// digest) or cannot be read in
// time: from there the prompt is recomputed. A corrupted block is never served.
#ifndef LONGCTX_ENGINE_KV_OFFLOADER_H_
#define LONGCTX_ENGINE_KV_OFFLOADER_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "engine/kv_block_pool.h"
#include "kvblock/block_keys.h"
#include "kvblock/hash128.h"
#include "memory_store/store_client.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace longctx {

// KvOffloaderOptions configures a KvOffloader.
struct KvOffloaderOptions {
  // Blocks waiting to be written; more are dropped (--offload_queue_blocks).
  // Default: 64.
  int max_queued_blocks = 64;
  // Blocks a restore fetches at once from each memory_store shard (one stream
  // each); the shards are read in parallel. Default: 1 (more streams to one
  // shard were slower on 2 cores shared with the store: docs/BENCHMARKS.md).
  int restore_streams_per_shard = 1;
  // The same for a shard read over its local socket (StoreClientOptions::
  // local_sockets), where several streams do pay: the store reads one
  // block from RocksDB while it sends another. Default: 3.
  int restore_streams_per_local_shard = 3;
};

// KvStoreIo is how the engine moves its blocks to and from the memory store:
// a KvOffloader on one rank, or a group's leader that has every rank move the
// blocks it holds.
class KvStoreIo {
 public:
  virtual ~KvStoreIo() = default;
  // Offload queues block `block` (holding `token_count` tokens) for storing
  // under `id`. Returns false if it was dropped (queue full).
  virtual bool Offload(const BlockKey& id, int block, int token_count) = 0;
  // Restore reads the blocks of `ids` into `blocks` (same length) in order and
  // returns how many leading blocks were restored: a stored block counts only
  // if its header names the same key and token digest.
  virtual int Restore(absl::Span<const BlockKey> ids,
                      absl::Span<const int> blocks) = 0;
};

// KvOffloader is thread-safe. The destructor finishes the block being written
// and drops the queued ones (counted as dropped).
class KvOffloader : public KvStoreIo {
 public:
  // `client` and `pool` are not owned and must outlive the offloader;
  // `registry` (may be null) receives its metrics.
  KvOffloader(StoreClient* client, KvBlockPool* pool,
              const Hash128& fingerprint, const KvOffloaderOptions& options,
              prometheus::Registry* registry);
  ~KvOffloader();

  // Offload queues pool block `block` (holding `token_count` tokens) for
  // storing under `id`. Returns false if the queue was full (dropped). A key
  // the store holds another block under is not overwritten (counted in
  // longctx_offload_conflicts_total).
  bool Offload(const BlockKey& id, int block, int token_count) override;

  // OffloadCopy is Offload of a copy of the block's bytes taken now, for a
  // pool whose reference counts the caller does not keep (a rank of a group,
  // whose blocks the leader places): the block may be rewritten right after.
  bool OffloadCopy(const BlockKey& id, int block, int token_count);

  // Restore reads the blocks of `ids` into `blocks` (same length) in order and
  // returns how many leading blocks were restored.
  int Restore(absl::Span<const BlockKey> ids,
              absl::Span<const int> blocks) override;

  // WaitIdle blocks until the queue is empty and nothing is being written.
  void WaitIdle();

 private:
  struct Job {
    BlockKey id;
    int block;
    int token_count;
    std::vector<uint8_t> copy;  // The block's bytes, for OffloadCopy.
  };
  void Loop();

  StoreClient* const client_;
  KvBlockPool* const pool_;
  const Hash128 fingerprint_;
  const KvOffloaderOptions options_;

  // The writer thread's host copy of a device block being offloaded.
  std::vector<uint8_t> staging_;

  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;

  prometheus::Counter* offloaded_blocks_ = nullptr;
  prometheus::Counter* offloaded_bytes_ = nullptr;
  prometheus::Counter* offload_seconds_ = nullptr;
  prometheus::Counter* offload_dropped_ = nullptr;
  prometheus::Counter* offload_failed_ = nullptr;
  prometheus::Counter* offload_conflicts_ = nullptr;
  prometheus::Counter* restored_blocks_ = nullptr;
  prometheus::Counter* restored_bytes_ = nullptr;
  prometheus::Counter* restore_seconds_ = nullptr;
  prometheus::Counter* restore_corrupt_ = nullptr;
};

}  // namespace longctx

#endif  // LONGCTX_ENGINE_KV_OFFLOADER_H_
