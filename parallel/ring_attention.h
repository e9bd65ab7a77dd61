// Context parallelism: one engine step run by the P ranks of a worker group.
//
// The leader (rank 0) schedules; every step it sends each rank a StepPlan: the
// spans of tokens to run and, for every KV block of each span's sequence, the
// rank that holds it and the block's id in that rank's pool. A rank runs the
// tokens whose blocks it holds, through every layer (RingStep), and the
// attention of a layer is computed with the peers:
//
// * pass-KV (ring attention, for prefill chunks): each rank packs the layer's
//   K,V of its blocks of the spans' sequences, attends its queries to them, and
//   passes the package around the ring P-1 times, attending to each package it
//   receives while the next one is in flight; partial results merge exactly by
//   log-sum-exp. Key runs wholly in a query run's causal future are skipped.
// * pass-Q (for decode and short chunks over long histories): each rank sends
//   its queries to every peer, every rank computes partial attention over its
//   local KV, and the partials go back to the query's rank to be merged.
//
// Which one a span uses is a choice of cost (bytes moved), and both give the
// same result (to fp32 rounding) as one rank holding every block.
#ifndef LONGCTX_PARALLEL_RING_ATTENTION_H_
#define LONGCTX_PARALLEL_RING_ATTENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/kv_block_pool.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"

namespace longctx {

// PlanSpan is a run of consecutive tokens of one sequence.
struct PlanSpan {
  int32_t start = 0;            // Absolute position of tokens[0].
  std::vector<int32_t> tokens;  // At positions [start, start + size).
  bool want_logits = false;     // The last token's logits.
  bool all_logits = false;      // Every token's logits (tests).
  // For block index i < ceil((start + tokens.size()) / block_size): the rank
  // that holds the block, and the block's id in that rank's pool.
  std::vector<int32_t> owner;
  std::vector<int32_t> local;

  int32_t end() const { return start + static_cast<int32_t>(tokens.size()); }
};

// BlockIo moves one block of one rank to or from the memory store.
struct BlockIo {
  int32_t rank = 0;
  int32_t local = 0;        // The block's id in that rank's pool.
  int32_t token_count = 0;  // Offload: tokens in the block.
  std::string key;          // Store key (16 bytes).
};

// StepPlan is what the leader sends every rank.
struct StepPlan {
  enum Kind : int32_t {
    kStep = 0,     // Run the spans.
    kPing = 1,     // Nothing to run: the leader is alive.
    kStop = 2,     // The group is shutting down.
    kRestore = 3,  // Read `restores` from the store; report to rank 0.
  };
  int32_t kind = kStep;
  uint64_t step = 0;  // Increases by one per kStep; part of message tags.
  std::vector<PlanSpan> spans;
  // Blocks each rank queues for the store (a copy, taken before the plan runs:
  // the blocks may be reused by the step), with any kind of plan.
  std::vector<BlockIo> offloads;
  std::vector<BlockIo> restores;  // kRestore only.
};

std::string EncodeStepPlan(const StepPlan& plan);
// DecodeStepPlan is INVALID_ARGUMENT for truncated or inconsistent bytes.
absl::StatusOr<StepPlan> DecodeStepPlan(absl::string_view bytes);

// SendStepPlan sends `plan` from rank 0 to every other rank; RecvStepPlan
// receives it on a rank > 0, waiting at most `wait` for it to start.
absl::Status SendStepPlan(Communicator& comm, const StepPlan& plan);
absl::StatusOr<StepPlan> RecvStepPlan(Communicator& comm, absl::Duration wait);

// BlockPlacer decides where a group's new KV blocks live: which rank holds
// each one and its block id in that rank's pool. Used by the leader only.
class BlockPlacer {
 public:
  struct Place {
    int rank = 0;
    int local = 0;
  };

  // Every rank has `blocks_per_rank` blocks.
  BlockPlacer(int ranks, int blocks_per_rank);

  int ranks() const { return static_cast<int>(free_.size()); }
  int free_blocks(int rank) const {
    return static_cast<int>(free_[rank].size());
  }
  int total_free() const;

  // PlaceBlocks places `count` new consecutive blocks of one sequence. Two or
  // more are dealt zig-zag (cut into 2P nearly equal chunks, rank r takes
  // chunks r and 2P-1-r: causal work is balanced); a single block goes to the
  // rank with the most free room, so a group's context grows with P. A rank
  // that is full hands its share to the rank with the most room.
  // RESOURCE_EXHAUSTED when fewer than `count` blocks are free in the group
  // (nothing is placed then).
  absl::StatusOr<std::vector<Place>> PlaceBlocks(int count);

  // Release returns a block to its rank.
  void Release(const Place& place);

 private:
  int MostFree() const;

  std::vector<std::vector<int>> free_;  // Per rank: stack of free ids.
};

// RingOptions chooses how attention moves between ranks.
struct RingOptions {
  enum class Mode { kAuto, kPassKv, kPassQ };
  // kAuto picks, per span, whichever moves fewer bytes (tests force each).
  Mode mode = Mode::kAuto;
};

// RingStats accumulate over the runs of a RingStep.
struct RingStats {
  int64_t steps = 0;
  int64_t bytes_sent = 0;        // Every message this rank sent.
  int64_t ring_bytes_sent = 0;   // Of which KV packages (pass-KV).
  double wait_seconds = 0;       // Blocked waiting for peers' messages.
  double attention_seconds = 0;  // Computing attention (all of it).
};

// RingStep runs plans on one rank. Used from one thread at a time.
class RingStep {
 public:
  // Not owned; they must outlive the RingStep. `pool` holds this rank's blocks.
  RingStep(LlamaModel* model, KvBlockPool* pool, Communicator* comm,
           const RingOptions& options = {});

  // Run runs `plan` (kind kStep) on this rank. On rank 0, `logits` receives
  // one row of vocab_size() per wanted token, in plan order (the last token of
  // want_logits spans, every token of all_logits spans); other ranks pass
  // null. INVALID_ARGUMENT for a plan inconsistent with the group or pool;
  // the communicator's errors (UNAVAILABLE, DEADLINE_EXCEEDED) when a peer
  // fails.
  absl::Status Run(const StepPlan& plan, float* logits);

  // The number of logits rows `plan` produces on rank 0.
  static int64_t LogitRows(const StepPlan& plan);

  const RingStats& stats() const { return stats_; }

 private:
  class Attention;

  LlamaModel* const model_;
  KvBlockPool* const pool_;
  Communicator* const comm_;
  const RingOptions options_;
  RingStats stats_;
  std::vector<float> my_logits_;
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_RING_ATTENTION_H_
