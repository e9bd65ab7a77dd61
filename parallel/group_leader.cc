#include "parallel/group_leader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

absl::Status Unavailable(absl::string_view what, const absl::Status& cause) {
  return absl::UnavailableError(absl::StrCat(what, ": ", cause.message()));
}

}  // namespace

void ApplyPlanOffloads(const StepPlan& plan, int rank, KvOffloader* io) {
  if (io == nullptr) return;
  for (const BlockIo& op : plan.offloads) {
    if (op.rank == rank) io->OffloadCopy(op.id, op.local, op.token_count);
  }
}

int32_t RestorePlanBlocks(const StepPlan& plan, int rank, KvOffloader* io) {
  if (io == nullptr) return 0;
  std::vector<BlockKey> ids;
  std::vector<int> blocks;
  for (const BlockIo& op : plan.restores) {
    if (op.rank != rank) continue;
    ids.push_back(op.id);
    blocks.push_back(op.local);
  }
  return io->Restore(ids, blocks);
}

GroupLeader::GroupLeader(std::string group_id, const RingOptions& ring,
                         LlamaModel* model, KvBlockPool* pool, KvBlockPool* ids,
                         KvOffloader* io)
    : group_id_(std::move(group_id)),
      ring_options_(ring),
      model_(model),
      pool_(pool),
      ids_(ids),
      io_(io) {}

absl::Status GroupLeader::Forward(absl::Span<const SeqSpan> spans,
                                  KvBlockPool& /*ids: ids_*/, float* logits) {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || broken_) {
    return absl::UnavailableError(
        absl::StrCat("worker group ", group_id_, " is not complete: ", why_));
  }
  DropStale();
  const int block = pool_->layout().block_size;
  StepPlan plan;
  plan.step = ++step_;
  std::vector<int> fresh;
  for (const SeqSpan& span : spans) {
    PlanSpan out;
    out.start = span.start;
    out.tokens.assign(span.tokens.begin(), span.tokens.end());
    out.want_logits = span.want_logits;
    const int nb = (out.end() + block - 1) / block;
    if (static_cast<int>(span.blocks.size()) < nb) {
      return absl::InvalidArgumentError(
          absl::StrCat("span up to position ", out.end(), " has only ",
                       span.blocks.size(), " KV blocks"));
    }
    fresh.clear();
    for (int i = 0; i < nb; ++i) {
      const Placed* placed = Current(span.blocks[i]);
      if (placed == nullptr) {
        fresh.push_back(span.blocks[i]);
      } else if (placed->generation != generation_) {
        return absl::UnavailableError(
            "the sequence's KV was held by an earlier group that broke up");
      }
    }
    if (!fresh.empty()) {
      absl::Status placed = Place(fresh);
      if (!placed.ok()) return placed;
    }
    for (int i = 0; i < nb; ++i) {
      const Placed& p = placed_[span.blocks[i]];
      out.owner.push_back(p.place.rank);
      out.local.push_back(p.place.local);
    }
    plan.spans.push_back(std::move(out));
  }
  plan.offloads = std::move(pending_offloads_);
  pending_offloads_.clear();
  absl::Status status = SendStepPlan(*comm_, plan);
  if (status.ok()) status = ring_->Run(plan, logits);
  if (!status.ok()) {
    if (absl::IsInvalidArgument(status)) return status;
    broken_ = true;
    why_ = std::string(status.message());
    return Unavailable(absl::StrCat("worker group ", group_id_, " lost a rank"),
                       status);
  }
  return absl::OkStatus();
}

bool GroupLeader::Offload(const BlockKey& key, int id, int token_count) {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || broken_ || io_ == nullptr) return false;
  const Placed* placed = Current(id);
  if (placed == nullptr || placed->generation != generation_) return false;
  const BlockPlacer::Place& place = placed->place;
  if (place.rank == 0) return io_->OffloadCopy(key, place.local, token_count);
  pending_offloads_.push_back({place.rank, place.local, token_count, key});
  return true;
}

int GroupLeader::Restore(absl::Span<const BlockKey> keys,
                         absl::Span<const int> ids) {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || broken_ || keys.empty()) return 0;
  DropStale();
  StepPlan plan;
  plan.kind = StepPlan::kRestore;
  std::vector<int> fresh;
  for (int id : ids) {
    if (Current(id) == nullptr) fresh.push_back(id);
  }
  if (!Place(fresh).ok()) return 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const Placed& p = placed_[ids[i]];
    if (p.generation != generation_) return 0;
    plan.restores.push_back({p.place.rank, p.place.local, 0, keys[i]});
  }
  plan.offloads = std::move(pending_offloads_);
  pending_offloads_.clear();
  absl::Status status = SendStepPlan(*comm_, plan);
  std::vector<int32_t> counts(comm_->size(), 0);
  if (status.ok()) {
    ApplyPlanOffloads(plan, 0, io_);
    counts[0] = RestorePlanBlocks(plan, 0, io_);
    for (int r = 1; r < comm_->size() && status.ok(); ++r) {
      status = comm_->Recv(&counts[r], sizeof(int32_t), r, kRestoreCountTag);
    }
  }
  if (!status.ok()) {
    broken_ = true;
    why_ = std::string(status.message());
    return 0;
  }
  // The first block a rank did not restore ends the restored prefix.
  std::vector<int32_t> seen(comm_->size(), 0);
  int restored = 0;
  for (const BlockIo& op : plan.restores) {
    if (seen[op.rank]++ >= counts[op.rank]) break;
    ++restored;
  }
  return restored;
}

void GroupLeader::Attach(Communicator* comm) {
  absl::MutexLock lock(&mu_);
  comm_ = comm;
  ring_ = std::make_unique<RingStep>(model_, pool_, comm, ring_options_);
  placer_ = std::make_unique<BlockPlacer>(comm->size(), pool_->capacity());
  ++generation_;
  // Cached ids name blocks the earlier group placed: a rank that came back
  // has lost them, so none may be found again.
  const int dropped = ids_->DropCached();
  if (dropped > 0) {
    Log(LogLevel::kInfo,
        "group %s: dropped %d cached blocks of the earlier group", group_id_,
        dropped);
  }
  step_ = 0;
  broken_ = false;
  why_.clear();
}

RingStats GroupLeader::Detach(const std::string& why) {
  absl::MutexLock lock(&mu_);
  RingStats stats;
  if (ring_ != nullptr) stats = ring_->stats();
  ring_.reset();
  comm_ = nullptr;
  why_ = why;
  return stats;
}

bool GroupLeader::Ping() {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || broken_) return false;
  StepPlan ping;
  ping.kind = StepPlan::kPing;
  ping.offloads = std::move(pending_offloads_);
  pending_offloads_.clear();
  absl::Status status = SendStepPlan(*comm_, ping);
  if (!status.ok()) {
    broken_ = true;
    why_ = std::string(status.message());
  }
  return status.ok();
}

void GroupLeader::Stop() {
  absl::MutexLock lock(&mu_);
  if (ring_ == nullptr || broken_) return;
  StepPlan stop;
  stop.kind = StepPlan::kStop;
  SendStepPlan(*comm_, stop).IgnoreError();  // Leaving either way.
  broken_ = true;
  why_ = "the worker is stopping";
}

std::string GroupLeader::why() const {
  absl::MutexLock lock(&mu_);
  return why_;
}

RingStats GroupLeader::stats() const {
  absl::MutexLock lock(&mu_);
  return ring_ != nullptr ? ring_->stats() : RingStats();
}

bool GroupLeader::IsCurrent(int id, const Placed& placed) const {
  return ids_->InUse(id) && ids_->Allocations(id) == placed.allocation;
}

void GroupLeader::Drop(int id) {
  auto it = placed_.find(id);
  if (it == placed_.end()) return;
  if (it->second.generation == generation_) {
    placer_->Release(it->second.place);
  }
  placed_.erase(it);
}

void GroupLeader::DropStale() {
  std::vector<int> stale;
  for (const auto& [id, placed] : placed_) {
    if (!IsCurrent(id, placed)) stale.push_back(id);
  }
  for (int id : stale) Drop(id);
}

const GroupLeader::Placed* GroupLeader::Current(int id) {
  auto it = placed_.find(id);
  if (it == placed_.end()) return nullptr;
  if (!IsCurrent(id, it->second)) {
    Drop(id);
    return nullptr;
  }
  return &it->second;
}

absl::Status GroupLeader::Place(const std::vector<int>& fresh) {
  auto places = placer_->PlaceBlocks(static_cast<int>(fresh.size()));
  if (!places.ok()) return places.status();
  for (size_t k = 0; k < fresh.size(); ++k) {
    placed_[fresh[k]] = {(*places)[k], generation_,
                         ids_->Allocations(fresh[k])};
  }
  return absl::OkStatus();
}

}  // namespace longctx
