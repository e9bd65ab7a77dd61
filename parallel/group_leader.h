// GroupLeader: what rank 0 of a worker group gives its engine: a
// ForwardModel that runs every step on the group's ranks (placing new KV
// blocks on them, sending the step plan, running its own part), and the
// KvStoreIo through which every rank offloads and restores the blocks it
// holds. The engine sees block ids of one pool over the group (`ids`); the
// leader maps them to (rank, block) and forgets the map when the group
// re-forms.
#ifndef LONGCTX_PARALLEL_GROUP_LEADER_H_
#define LONGCTX_PARALLEL_GROUP_LEADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "engine/forward_model.h"
#include "engine/kv_block_pool.h"
#include "engine/kv_offloader.h"
#include "model/llama_model.h"
#include "parallel/block_placer.h"
#include "parallel/communicator.h"
#include "parallel/ring_attention.h"
#include "parallel/step_plan.h"

namespace longctx {

// Tag of a rank's restored-block count, sent to rank 0 after a kRestore plan.
inline constexpr uint64_t kRestoreCountTag = 3;

// ApplyPlanOffloads queues the plan's offloads of blocks held by `rank`
// (copies: the plan may reuse the blocks). Nothing without `io`.
void ApplyPlanOffloads(const StepPlan& plan, int rank, KvOffloader* io);

// RestorePlanBlocks restores the blocks `rank` holds of a kRestore plan, in
// plan order; returns how many of them, leading, were restored.
int32_t RestorePlanBlocks(const StepPlan& plan, int rank, KvOffloader* io);

// GroupLeader is thread-safe: the engine's thread calls Forward, Offload and
// Restore, the group's thread the rest; steps and pings are serialized.
class GroupLeader : public ForwardModel, public KvStoreIo {
 public:
  // `model` and `pool` (this rank's blocks), `ids` (the engine's block ids
  // over the group) and `io` (this rank's store I/O; may be null) are not
  // owned and must outlive the leader.
  GroupLeader(std::string group_id, const RingOptions& ring, LlamaModel* model,
              KvBlockPool* pool, KvBlockPool* ids, KvOffloader* io);
  int vocab_size() const override { return model_->vocab_size(); }

  // Forward places new blocks on the ranks, sends every rank the step's plan
  // and runs this rank's part (RingStep). UNAVAILABLE when the group is not
  // complete or a rank is lost (the group is broken then, until Attach).
  absl::Status Forward(absl::Span<const SeqSpan> spans,
                       KvBlockPool& /*ids: ids_*/, float* logits) override;

  // Offload queues the store write of an id's block on the rank holding it:
  // at once on this rank, with the next plan on the others.
  bool Offload(const BlockKey& key, int id, int token_count) override;

  // Restore places the ids' blocks and has every rank read its blocks from
  // the store; returns how many leading blocks every rank restored.
  int Restore(absl::Span<const BlockKey> keys,
              absl::Span<const int> ids) override;

  // Attach starts a new generation on `comm`; Detach ends it.
  void Attach(Communicator* comm);

  RingStats Detach(const std::string& why);

  // Ping tells the other ranks the leader is alive; false when the group is
  // broken.
  bool Ping();

  void Stop();

  std::string why() const;

  RingStats stats() const;

 private:
  struct Placed {
    BlockPlacer::Place place;
    uint64_t generation = 0;  // Of the group it was placed in.
    uint64_t allocation = 0;  // ids_->Allocations(id) when it was placed.
  };

  // Whether a placement still belongs to the id's holder: the id is in use
  // and was not freed and taken again since.
  bool IsCurrent(int id, const Placed& placed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Forgets an id's placement, giving the block back to its rank when it was
  // placed in the current group (an earlier group's placer is gone).
  void Drop(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Ids the engine freed (or freed and took again, e.g. a cached id evicted)
  // give their blocks back to their ranks.
  void DropStale() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The id's current placement, or null (a stale one is dropped here).
  const Placed* Current(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Places new blocks for `fresh` ids (consecutive blocks of one sequence).
  absl::Status Place(const std::vector<int>& fresh)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string group_id_;
  const RingOptions ring_options_;
  LlamaModel* const model_;
  KvBlockPool* const pool_;
  KvBlockPool* const ids_;
  KvOffloader* const io_;

  mutable absl::Mutex mu_;
  std::vector<BlockIo> pending_offloads_ ABSL_GUARDED_BY(mu_);
  Communicator* comm_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::unique_ptr<RingStep> ring_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<BlockPlacer> placer_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, Placed> placed_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::string why_ ABSL_GUARDED_BY(mu_) = "the group has not formed yet";
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_GROUP_LEADER_H_
