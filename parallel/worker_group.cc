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

RingStats Plus(RingStats a, const RingStats& b) {
  a.steps += b.steps;
  a.bytes_sent += b.bytes_sent;
  a.ring_bytes_sent += b.ring_bytes_sent;
  a.wait_seconds += b.wait_seconds;
  a.attention_seconds += b.attention_seconds;
  return a;
}

RingStats Minus(RingStats a, const RingStats& b) {
  a.steps -= b.steps;
  a.bytes_sent -= b.bytes_sent;
  a.ring_bytes_sent -= b.ring_bytes_sent;
  a.wait_seconds -= b.wait_seconds;
  a.attention_seconds -= b.attention_seconds;
  return a;
}

}  // namespace
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
    leader_ = std::make_unique<GroupLeader>(options_.group_id, options_.ring,
                                            model, pool, group_pool_.get(), io);
  }
  thread_ = std::thread([this] { Run(); });
}

WorkerGroup::~WorkerGroup() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (leader_ != nullptr) leader_->Stop();
  {
    // A follower waiting for the leader's next plan stops waiting now.
    absl::MutexLock lock(&mu_);
    if (pending_recv_ != nullptr) pending_recv_->Abort();
    // Anything else the thread may be in (a step's transfer, a restore,
    // forming a group) ends within its own timeout.
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(3))) {
      Log(LogLevel::kWarning,
          "%s: waiting for the group's thread to end its transfer (at most "
          "--group_op_timeout_seconds or --group_form_timeout_seconds)",
          options_.group_id);
    }
  }
  thread_.join();
}

ForwardModel* WorkerGroup::forward_model() { return leader_.get(); }

KvStoreIo* WorkerGroup::store_io() {
  return io_ != nullptr ? leader_.get() : nullptr;
}

RingStats WorkerGroup::stats() const {
  // The leader's current generation first: Lead adds it to stats_ when it
  // ends, under mu_, after the leader has detached it.
  const RingStats current = leader_ != nullptr ? leader_->stats() : RingStats();
  absl::MutexLock lock(&mu_);
  return Plus(stats_, current);
}

bool WorkerGroup::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void WorkerGroup::AddStats(const RingStats& more) {
  absl::MutexLock lock(&mu_);
  stats_ = Plus(stats_, more);
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
  leader_->Attach(comm.get());
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
    if (!leader_->Ping()) break;
  }
  const std::string why = leader_->why();
  if (!stopping()) {
    Log(LogLevel::kWarning, "%s broke up: %s; forming it again",
        options_.group_id, why);
    SetReady(false, why);
    AddStats(leader_->Detach(why));
  }
  // When stopping, the destructor sends the other ranks kStop first; the
  // communicator lives until then.
  if (stopping()) {
    leader_->Stop();
    AddStats(leader_->Detach("the worker is stopping"));
  }
}

void WorkerGroup::Follow(std::unique_ptr<Communicator> comm) {
  RingStep ring(model_, pool_, comm.get(), options_.ring);
  SetReady(true, "");
  std::string why;
  RingStats counted;  // Of this generation, already in stats_.
  while (!stopping()) {
    auto plan = RecvStepPlan(*comm, options_.heartbeat * 10,
                             [this](Communicator::PendingOp* op) {
                               absl::MutexLock lock(&mu_);
                               pending_recv_ = op;
                               if (op != nullptr && stopping_) op->Abort();
                             });
    if (!plan.ok()) {
      why = absl::StrCat("lost the leader: ", plan.status().message());
      break;
    }
    if (plan->kind == StepPlan::kStop) {
      why = "the leader left the group";
      break;
    }
    ApplyPlanOffloads(*plan, options_.rank, io_);
    if (plan->kind == StepPlan::kPing) continue;
    if (plan->kind == StepPlan::kRestore) {
      const int32_t count = RestorePlanBlocks(*plan, options_.rank, io_);
      absl::Status status =
          comm->Send(&count, sizeof(count), 0, kRestoreCountTag);
      if (!status.ok()) {
        why = absl::StrCat("a restore failed: ", status.message());
        break;
      }
      continue;
    }
    absl::Status status = ring.Run(*plan, nullptr);
    AddStats(Minus(ring.stats(), counted));
    counted = ring.stats();
    if (!status.ok()) {
      why = absl::StrCat("a step failed: ", status.message());
      break;
    }
  }
  if (!stopping()) {
    Log(LogLevel::kWarning, "%s broke up: %s; forming it again",
        options_.group_id, why);
    SetReady(false, why);
  }
}

}  // namespace longctx
