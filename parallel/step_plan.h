// StepPlan: what a group's leader (rank 0) sends its ranks every engine step
// (docs/DESIGN.md, "Splitting a sequence across ranks"): the spans of tokens
// to run, where every KV block of their sequences lives, and the blocks each
// rank moves to or from the memory store; its wire format, and sending and
// receiving it over the group's communicator.
#ifndef LONGCTX_PARALLEL_STEP_PLAN_H_
#define LONGCTX_PARALLEL_STEP_PLAN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kvblock/block_keys.h"
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
  BlockKey id;              // Store key and token digest.
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
// receives it on a rank > 0, waiting at most `wait` for it to start. While it
// waits, `watch` (when set) holds the pending receive, so that another thread
// may Abort it: watch(op) before the wait, watch(nullptr) after it, before
// the op is destroyed.
absl::Status SendStepPlan(Communicator& comm, const StepPlan& plan);
absl::StatusOr<StepPlan> RecvStepPlan(
    Communicator& comm, absl::Duration wait,
    const std::function<void(Communicator::PendingOp*)>& watch = nullptr);

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_STEP_PLAN_H_
