#include "parallel/worker_group.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "parallel/block_placer.h"
#include "parallel/gloo_communicator.h"
#include "parallel/rendezvous_store.h"
#include "parallel/step_plan.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

absl::Status Unavailable(absl::string_view what, const absl::Status& cause) {
  return absl::UnavailableError(absl::StrCat(what, ": ", cause.message()));
}

// Rank r's restored-block count for rank 0, after a kRestore plan.
constexpr uint64_t kRestoreCountTag = 3;

// Queues the plan's offloads of this rank (copies: the plan may reuse the
// blocks).
void ApplyOffloads(const StepPlan& plan, int rank, KvOffloader* io) {
  if (io == nullptr) return;
  for (const BlockIo& op : plan.offloads) {
    if (op.rank == rank) io->OffloadCopy(op.key, op.local, op.token_count);
  }
}

// Restores this rank's blocks of a kRestore plan, in plan order; returns how
// many of them, leading, were restored.
int32_t RestoreOnRank(const StepPlan& plan, int rank, KvOffloader* io) {
  if (io == nullptr) return 0;
  std::vector<std::string> keys;
  std::vector<int> blocks;
  for (const BlockIo& op : plan.restores) {
    if (op.rank != rank) continue;
    keys.push_back(op.key);
    blocks.push_back(op.local);
  }
  return io->Restore(keys, blocks);
}

}  // namespace

// LeaderModel runs the engine's steps on the group. Every method may be
// called from the engine's thread (Forward) and the group's thread (the
// rest); steps and pings are serialized.
class WorkerGroup::LeaderModel : public ForwardModel {
 public:
  // `ids` is the engine's pool of block ids over the group.
  LeaderModel(const WorkerGroupOptions& options, LlamaModel* model,
              KvBlockPool* pool, KvBlockPool* ids, KvOffloader* io)
      : options_(options), model_(model), pool_(pool), ids_(ids), io_(io) {}

  int vocab_size() const override { return model_->vocab_size(); }

  absl::Status Forward(absl::Span<const SeqSpan> spans,
                       KvBlockPool& /*ids: ids_*/, float* logits) override {
    absl::MutexLock lock(&mu_);
    if (ring_ == nullptr || broken_) {
      return absl::UnavailableError(absl::StrCat(
          "worker group ", options_.group_id, " is not complete: ", why_));
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
      return Unavailable(
          absl::StrCat("worker group ", options_.group_id, " lost a rank"),
          status);
    }
    return absl::OkStatus();
  }

  // Offload queues the store write of an id's block on the rank holding it:
  // at once on this rank, with the next plan on the others.
  bool Offload(const std::string& key, int id, int token_count) {
    absl::MutexLock lock(&mu_);
    if (ring_ == nullptr || broken_ || io_ == nullptr) return false;
    const Placed* placed = Current(id);
    if (placed == nullptr || placed->generation != generation_) return false;
    const BlockPlacer::Place& place = placed->place;
    if (place.rank == 0) return io_->OffloadCopy(key, place.local, token_count);
    pending_offloads_.push_back({place.rank, place.local, token_count, key});
    return true;
  }

  // Restore places the ids' blocks and has every rank read its blocks from
  // the store; returns how many leading blocks every rank restored.
  int Restore(absl::Span<const std::string> keys, absl::Span<const int> ids) {
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
      ApplyOffloads(plan, 0, io_);
      counts[0] = RestoreOnRank(plan, 0, io_);
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

  // Attach starts a new generation on `comm`; Detach ends it.
  void Attach(Communicator* comm) {
    absl::MutexLock lock(&mu_);
    comm_ = comm;
    ring_ = std::make_unique<RingStep>(model_, pool_, comm, options_.ring);
    placer_ = std::make_unique<BlockPlacer>(comm->size(), pool_->capacity());
    ++generation_;
    // Cached ids name blocks the earlier group placed: a rank that came back
    // has lost them, so none may be found again.
    const int dropped = ids_->DropCached();
    if (dropped > 0) {
      Log(LogLevel::kInfo,
          "group %s: dropped %d cached blocks of the earlier group",
          options_.group_id, dropped);
    }
    step_ = 0;
    broken_ = false;
    why_.clear();
  }

  RingStats Detach(const std::string& why) {
    absl::MutexLock lock(&mu_);
    RingStats stats;
    if (ring_ != nullptr) stats = ring_->stats();
    ring_.reset();
    comm_ = nullptr;
    why_ = why;
    return stats;
  }

  // Ping tells the other ranks the leader is alive; false when the group is
  // broken.
  bool Ping() {
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

  void Stop() {
    absl::MutexLock lock(&mu_);
    if (ring_ == nullptr || broken_) return;
    StepPlan stop;
    stop.kind = StepPlan::kStop;
    SendStepPlan(*comm_, stop).IgnoreError();  // Leaving either way.
    broken_ = true;
    why_ = "the worker is stopping";
  }

  std::string why() const {
    absl::MutexLock lock(&mu_);
    return why_;
  }

  RingStats stats() const {
    absl::MutexLock lock(&mu_);
    return ring_ != nullptr ? ring_->stats() : RingStats();
  }

 private:
  struct Placed {
    BlockPlacer::Place place;
    uint64_t generation = 0;  // Of the group it was placed in.
    uint64_t allocation = 0;  // ids_->Allocations(id) when it was placed.
  };

  // Whether a placement still belongs to the id's holder: the id is in use
  // and was not freed and taken again since.
  bool IsCurrent(int id, const Placed& placed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ids_->InUse(id) && ids_->Allocations(id) == placed.allocation;
  }

  // Forgets an id's placement, giving the block back to its rank when it was
  // placed in the current group (an earlier group's placer is gone).
  void Drop(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = placed_.find(id);
    if (it == placed_.end()) return;
    if (it->second.generation == generation_) {
      placer_->Release(it->second.place);
    }
    placed_.erase(it);
  }

  // Ids the engine freed (or freed and took again, e.g. a cached id evicted)
  // give their blocks back to their ranks.
  void DropStale() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<int> stale;
    for (const auto& [id, placed] : placed_) {
      if (!IsCurrent(id, placed)) stale.push_back(id);
    }
    for (int id : stale) Drop(id);
  }

  // The id's current placement, or null (a stale one is dropped here).
  const Placed* Current(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = placed_.find(id);
    if (it == placed_.end()) return nullptr;
    if (!IsCurrent(id, it->second)) {
      Drop(id);
      return nullptr;
    }
    return &it->second;
  }

  // Places new blocks for `fresh` ids (consecutive blocks of one sequence).
  absl::Status Place(const std::vector<int>& fresh)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto places = placer_->PlaceBlocks(static_cast<int>(fresh.size()));
    if (!places.ok()) return places.status();
    for (size_t k = 0; k < fresh.size(); ++k) {
      placed_[fresh[k]] = {(*places)[k], generation_,
                           ids_->Allocations(fresh[k])};
    }
    return absl::OkStatus();
  }

  const WorkerGroupOptions& options_;
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

// GroupStoreIo is the leader engine's KvStoreIo: every rank moves the blocks
// it holds.
class WorkerGroup::GroupStoreIo : public KvStoreIo {
 public:
  explicit GroupStoreIo(LeaderModel* leader) : leader_(leader) {}
  bool Offload(const std::string& key, int block, int token_count) override {
    return leader_->Offload(key, block, token_count);
  }
  int Restore(absl::Span<const std::string> keys,
              absl::Span<const int> blocks) override {
    return leader_->Restore(keys, blocks);
  }

 private:
  LeaderModel* const leader_;
};

WorkerGroup::WorkerGroup(
    const WorkerGroupOptions& options, LlamaModel* model, KvBlockPool* pool,
    KvOffloader* io,
    std::function<void(bool ready, const std::string& why)> on_ready)
    : options_(options),
      model_(model),
      pool_(pool),
      on_ready_(on_ready),
      io_(io) {
  if (options_.rank == 0) {
    group_pool_ = *KvBlockPool::CreateUnbacked(
        pool->layout(), pool->capacity() * std::max(1, options_.size));
    leader_model_ = std::make_unique<LeaderModel>(options_, model, pool,
                                                  group_pool_.get(), io);
    if (io != nullptr) {
      store_io_ = std::make_unique<GroupStoreIo>(leader_model_.get());
    }
  }
  thread_ = std::thread([this] { Run(); });
}

WorkerGroup::~WorkerGroup() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (leader_model_ != nullptr) leader_model_->Stop();
  // A follower may sit in a receive until the leader's next message (at most
  // ten heartbeats); it is not waited for past a short grace, since the
  // process is ending.
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
  if (mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(3))) {
    mu_.Unlock();
    thread_.join();
    mu_.Lock();
  } else {
    thread_.detach();
  }
}

ForwardModel* WorkerGroup::forward_model() { return leader_model_.get(); }

KvStoreIo* WorkerGroup::store_io() { return store_io_.get(); }

RingStats WorkerGroup::stats() const {
  if (leader_model_ != nullptr) return leader_model_->stats();
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool WorkerGroup::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void WorkerGroup::SetReady(bool ready, const std::string& why) {
  if (on_ready_) on_ready_(ready, why);
}

void WorkerGroup::Run() {
  const std::string& id = options_.group_id;
  RendezvousStore generations(options_.rendezvous_address, id,
                              options_.form_timeout,
                              options_.rendezvous_security);
  uint64_t last = 0;
  std::string last_problem;
  while (!stopping()) {
    uint64_t generation = 0;
    if (options_.rank == 0) {
      // A new number per attempt, increasing across restarts of the leader.
      generation = std::max<uint64_t>(
          last + 1, static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())));
      absl::Status status =
          generations.Set("generation", absl::StrCat(generation));
      if (!status.ok()) {
        const std::string problem =
            absl::StrCat("cannot reach the rendezvous service at ",
                         options_.rendezvous_address, ": ", status.message());
        if (problem != last_problem) Log(LogLevel::kWarning, "%s", problem);
        last_problem = problem;
        SetReady(false, problem);
        absl::SleepFor(absl::Seconds(1));
        continue;
      }
    } else {
      auto values = generations.Get({"generation"}, options_.form_timeout);
      if (!values.ok() || !absl::SimpleAtoi((*values)[0], &generation)) {
        const std::string problem = absl::StrCat(
            "no leader (rank 0) of ", id, " has published a group: ",
            values.ok() ? "bad generation" : values.status().message());
        if (problem != last_problem) Log(LogLevel::kWarning, "%s", problem);
        last_problem = problem;
        SetReady(false, problem);
        continue;
      }
      if (generation == last) {  // The leader has not started a new one yet.
        absl::SleepFor(absl::Milliseconds(200));
        continue;
      }
    }
    RendezvousStore store(
        options_.rendezvous_address, absl::StrCat(id, "/gloo/", generation),
        options_.rank == 0 ? 2 * options_.form_timeout : options_.form_timeout,
        options_.rendezvous_security);
    GlooOptions gloo;
    gloo.rank = options_.rank;
    gloo.size = options_.size;
    gloo.hostname = options_.hostname;
    gloo.timeout = options_.op_timeout;
    // The leader waits longer than the others try: a rank that first tried a
    // stale generation still finds the leader waiting in the new one.
    gloo.connect_timeout =
        options_.rank == 0 ? 2 * options_.form_timeout : options_.form_timeout;
    auto comm = GlooCommunicator::Connect(store, gloo);
    last = generation;
    if (!comm.ok()) {
      const std::string problem =
          absl::StrCat(id, " did not form: ", comm.status().message());
      if (problem != last_problem) Log(LogLevel::kWarning, "%s", problem);
      last_problem = problem;
      SetReady(false, problem);
      continue;
    }
    last_problem.clear();
    Log(LogLevel::kInfo, "%s formed: rank %d of %d (generation %d)", id,
        options_.rank, options_.size, generation);
    if (options_.rank == 0) {
      Lead(*std::move(comm));
    } else {
      Follow(*std::move(comm));
    }
  }
  absl::MutexLock lock(&mu_);
  done_ = true;
}

void WorkerGroup::Lead(std::unique_ptr<Communicator> comm) {
  leader_model_->Attach(comm.get());
  SetReady(true, "");
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.heartbeat)) {
        break;
      }
    }
    if (!leader_model_->Ping()) break;
  }
  const std::string why = leader_model_->why();
  if (!stopping()) {
    Log(LogLevel::kWarning, "%s broke up: %s; forming it again",
        options_.group_id, why);
    SetReady(false, why);
    leader_model_->Detach(why);
  }
  // When stopping, the destructor sends the other ranks kStop first; the
  // communicator lives until then.
  if (stopping()) {
    leader_model_->Stop();
    leader_model_->Detach("the worker is stopping");
  }
}

void WorkerGroup::Follow(std::unique_ptr<Communicator> comm) {
  RingStep ring(model_, pool_, comm.get(), options_.ring);
  SetReady(true, "");
  std::string why;
  while (!stopping()) {
    auto plan = RecvStepPlan(*comm, options_.heartbeat * 10);
    if (!plan.ok()) {
      why = absl::StrCat("lost the leader: ", plan.status().message());
      break;
    }
    if (plan->kind == StepPlan::kStop) {
      why = "the leader left the group";
      break;
    }
    ApplyOffloads(*plan, options_.rank, io_);
    if (plan->kind == StepPlan::kPing) continue;
    if (plan->kind == StepPlan::kRestore) {
      const int32_t count = RestoreOnRank(*plan, options_.rank, io_);
      absl::Status status =
          comm->Send(&count, sizeof(count), 0, kRestoreCountTag);
      if (!status.ok()) {
        why = absl::StrCat("a restore failed: ", status.message());
        break;
      }
      continue;
    }
    absl::Status status = ring.Run(*plan, nullptr);
    if (!status.ok()) {
      why = absl::StrCat("a step failed: ", status.message());
      break;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stats_ = ring.stats();
  }
  if (!stopping()) {
    Log(LogLevel::kWarning, "%s broke up: %s; forming it again",
        options_.group_id, why);
    SetReady(false, why);
  }
}

}  // namespace longctx
