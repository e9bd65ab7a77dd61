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
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv_block_pool.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "parallel/step_plan.h"

namespace longctx {

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
