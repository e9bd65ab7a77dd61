// Engine: continuous batching on one worker. Requests queue up, join the
// running batch between steps, have their prompts prefilled in chunks (so
// running decodes are never starved by a long prompt), and decode together: one
// step runs every running sequence's next token in one forward pass. Each
// sequence stops on its own conditions; a cancelled sequence frees its KV
// blocks at the next step boundary.
//
// Prompt prefixes are reused, never recomputed, from two places:
//  * the pool's prefix cache (KvBlockPool): full prompt blocks stay in memory
//    after their request ends, and a later prompt that starts with them shares
//    them (reference counted, no copy);
//  * the memory store (KvOffloader): the blocks after the cached ones are read
//    back from the store. A restore runs on the engine's restore thread while
//    the other sequences keep stepping; the sequence joins prefill when it
//    ends. (A group's store I/O shares the ranks' link with the steps and
//    holds them back while it restores.)
// Only the rest of the prompt is prefilled. Blocks that the sequence computes
// are published to the prefix cache and offloaded to the store as they
// complete.
#ifndef LONGCTX_ENGINE_ENGINE_H_
#define LONGCTX_ENGINE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine_metrics.h"
#include "engine/forward_model.h"
#include "engine/kv_block_pool.h"
#include "engine/kv_offloader.h"
#include "kernels/sampling.h"

namespace longctx {

// EngineOptions configures an Engine.
struct EngineOptions {
  // Most sequences in the running batch (--max_batch). Default: 64.
  int max_running = 64;
  // Most requests waiting to start (--max_queue); more are RESOURCE_EXHAUSTED.
  // Default: 256.
  int max_waiting = 256;
  // Longest a request may wait to start (--max_queue_wait): one still waiting
  // after that leaves the queue with RESOURCE_EXHAUSTED. Default: 5 minutes.
  absl::Duration max_queue_wait = absl::Minutes(5);
  // A waiting request whose KV blocks do not fit yet lets the requests behind
  // it that fit start first, for at most this long after it arrived; then
  // nothing behind it starts before it does, so it never starves
  // (--max_bypass_wait). Zero: strictly first come, first served. Default:
  // 10 s.
  absl::Duration max_bypass_wait = absl::Seconds(10);
  // Most prompt tokens prefilled per step (--prefill_chunk_tokens). Default:
  // 512.
  int prefill_chunk_tokens = 512;
  // Where to report metrics; null reports none. Not owned.
  EngineMetrics* metrics = nullptr;
  // Moves prompt blocks to and from the memory store; null runs without a
  // store. Not owned.
  KvStoreIo* offloader = nullptr;
  // Seeds the block keys, with each request's cache namespace (the model
  // fingerprint).
  Hash128 fingerprint;
  // Whether full prompt blocks stay in the KV pool after their request, for
  // later requests that share the prefix (--prefix_cache). Default: true.
  bool prefix_cache = true;
  // Called once, on the engine's thread, when the model reports itself
  // broken for good after a failed step (ForwardModel::health, e.g. a GPU
  // fault): the worker stops serving. May be empty.
  std::function<void(const absl::Status&)> on_model_failure;
};

// GenerateParams is one validated request.
struct GenerateParams {
  std::vector<int32_t> prompt;  // Non-empty, ids in the vocabulary.
  float temperature = 1.0f;     // 0 is greedy.
  int top_k = 0;                // 0 keeps all.
  float top_p = 1.0f;           // (0, 1].
  uint64_t seed = 0;
  int max_new_tokens = 16;  // >= 1.
  std::vector<int32_t> stop_token_ids;
  bool logprobs = false;
  int top_logprobs = 0;
  // Whether to reuse cached or stored prompt blocks, and to cache and store
  // new ones.
  bool cache_read = true;
  bool cache_write = true;
  // The cache namespace (kvblock/block_keys.h): blocks are shared, cached
  // and stored only between requests of the same namespace.
  std::string cache_namespace;
  // The caller's deadline: a request still waiting to start then leaves the
  // queue with DEADLINE_EXCEEDED.
  absl::Time deadline = absl::InfiniteFuture();
};

// TokenLogprob: a generated token's log-probability under the sampling
// distribution's logits, and the most likely alternatives (most likely first).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<kernels::TokenLogprob> top;
};

// FinishReason says why a request's generation ended.
enum class FinishReason {
  kNotFinished,  // Every event but the last, and a failed request's last.
  kLength,       // max_new_tokens were generated.
  kStopToken,    // A stop token id was generated.
};

// TokenEvent is what the engine reports to a request's sink. It holds no
// wire types: the worker service turns it into its response message.
struct TokenEvent {
  std::vector<int32_t> tokens;         // New tokens, in order.
  std::vector<TokenLogprob> logprobs;  // One per token when asked for.
  bool finished = false;               // Last event of the request.
  FinishReason finish_reason = FinishReason::kNotFinished;
  int cached_tokens = 0;         // Prompt tokens reused, not computed.
  int memory_cached_tokens = 0;  // Of those, shared from the prefix cache.
  double prefill_seconds = 0;
  double decode_seconds = 0;
  absl::Status status;  // Not OK: the request failed (finished).
};

// Sink receives a request's events on the engine's thread, in order; it must
// not block. After an event with finished set, it is never called again.
using TokenSink = std::function<void(TokenEvent)>;

// Engine owns its scheduling thread and, with an offloader, its restore thread
// (both stopped in the destructor, which waits for a restore in flight and
// fails every unfinished request with CANCELLED). Thread-safe.
class Engine {
 public:
  // `model` and `pool` are not owned and must outlive the engine.
  Engine(ForwardModel* model, KvBlockPool* pool, const EngineOptions& options);
  ~Engine();

  // Submit queues a request and returns its id. RESOURCE_EXHAUSTED when the
  // queue is full, or when prompt + max_new_tokens could never fit in the KV
  // pool. A request that cannot start within max_queue_wait, or before its
  // deadline, finishes with RESOURCE_EXHAUSTED, or DEADLINE_EXCEEDED when its
  // deadline came first, and frees its place in the queue.
  absl::StatusOr<int64_t> Submit(GenerateParams params, TokenSink sink);

  // Cancel stops a request; its sink gets a final CANCELLED event and its KV
  // blocks are freed at the next step boundary. Unknown or finished ids are
  // ignored.
  void Cancel(int64_t id);

  // Counters for status reports: sequences holding KV (running or
  // restoring), and requests queued.
  int running() const;
  int waiting() const;
  // How long the engine's current step has been running; zero between steps.
  // A step that takes far longer than usual means a stuck device or a rank of
  // the group that stopped answering (the worker then reports not ready).
  absl::Duration StepAge() const;

 private:
  struct Sequence;
  // A finished restore: the sequence and how many blocks it got.
  struct Restored {
    Sequence* seq;
    int blocks;
  };

  // What a step takes from the other threads, under the lock.
  struct StepInputs {
    bool changed = false;  // Something was cancelled, restored or admitted.
    std::vector<std::unique_ptr<Sequence>> cancelled_waiting;
    std::vector<std::unique_ptr<Sequence>> expired;  // Waited too long.
    std::vector<std::unique_ptr<Sequence>> admitted;
    std::vector<Restored> restored;
  };
  // One forward call: its spans and, per span, its sequence and whether it
  // is a prompt chunk.
  struct Batch {
    std::vector<SeqSpan> spans;
    std::vector<Sequence*> owners;
    std::vector<bool> is_prefill;
  };

  void Loop();
  // The restore thread: runs queued restores one after the other.
  void RestoreLoop();
  // One step: admit, build the batch, run it, sample, report. Returns false
  // when nothing changed (nothing admitted, restored, cancelled or computed).
  bool Step();
  // Step's parts, in order.
  StepInputs TakeInputsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailExpired(std::vector<std::unique_ptr<Sequence>>& expired);
  void JoinRestored(const Restored& done);
  Batch BuildBatch();
  // Runs the batch and reports each wanted row's token (or the failure).
  void RunBatch(const Batch& batch);
  void FailBatch(const Batch& batch, const absl::Status& status);
  // Samples the sequence's next token from `logits`, reports it, and ends
  // the sequence at a stop token or its length.
  void EmitToken(Sequence& seq, const float* logits);
  // Drops finished (and cancelled) sequences from the running batch.
  void EraseFinished();
  // Admits waiting requests while their KV fits; returns them.
  std::vector<std::unique_ptr<Sequence>> AdmitLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends an admitted sequence to restore or straight to the running batch.
  void Start(std::unique_ptr<Sequence> seq);
  void Finish(Sequence& seq, FinishReason reason, absl::Status status);
  int BlocksFor(int tokens) const;
  // Publishes the sequence's newly completed prompt blocks to the prefix cache
  // and queues them for the store.
  void CacheCompletedBlocks(Sequence& seq);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ForwardModel* const model_;
  KvBlockPool* const pool_;
  const EngineOptions options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> cancelled_ ABSL_GUARDED_BY(mu_);
  int running_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped by whatever can give the engine thread work: submit, cancel, a
  // finished restore.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // When the current step started (absl::ToUnixNanos), or 0 between steps.
  std::atomic<int64_t> step_started_ns_{0};
  // Sequences (owned by restoring_) for the restore thread, and its results.
  std::deque<Sequence*> to_restore_ ABSL_GUARDED_BY(mu_);
  std::vector<Restored> restored_ ABSL_GUARDED_BY(mu_);

  // Owned by the engine thread.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<std::unique_ptr<Sequence>> restoring_;
  std::vector<float> logits_;
  int64_t evicted_seen_ = 0;   // pool_->evicted_blocks() at the last report.
  bool model_failed_ = false;  // on_model_failure was called.
  std::thread thread_;
  std::thread restorer_;
};

}  // namespace longctx

#endif  // LONGCTX_ENGINE_ENGINE_H_
