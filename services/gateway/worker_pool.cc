#include "services/gateway/worker_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace longctx {

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(
    const WorkerPoolOptions& options) {
  if (options.workers.empty()) {
    return absl::InvalidArgumentError("--workers lists no worker");
  }
  if (options.group_size < 1 ||
      options.workers.size() % static_cast<size_t>(options.group_size) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--workers lists ", options.workers.size(),
                     " ranks, which is not a multiple of --group_size=",
                     options.group_size));
  }
  std::unique_ptr<WorkerPool> pool(new WorkerPool(options));
  pool->prober_ = std::thread([p = pool.get()] { p->ProbeLoop(); });
  return pool;
}

WorkerPool::WorkerPool(const WorkerPoolOptions& options)
    : options_(options),
      num_groups_(static_cast<int>(options.workers.size()) /
                  options.group_size),
      states_(num_groups_) {
  for (const HostPort& address : options_.workers) {
    stubs_.push_back(worker::v1::Worker::NewStub(
        options_.channel_security.NewChannel(address.ToString())));
  }
  for (GroupState& state : states_) state.problem = "not probed yet";
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (prober_.joinable()) prober_.join();
}

void WorkerPool::ProbeLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.Unlock();
    ProbeOnce();
    mu_.Lock();
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.probe_interval);
  }
}

void WorkerPool::ProbeOnce() {
  std::vector<std::string> problems(num_groups_);
  for (size_t i = 0; i < stubs_.size(); ++i) {
    const int group = static_cast<int>(i) / options_.group_size;
    if (!problems[group].empty()) continue;  // One reason per group is enough.
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.probe_timeout));
    worker::v1::GetStatusRequest request;
    worker::v1::WorkerStatus status;
    grpc::Status rpc = stubs_[i]->GetStatus(&context, request, &status);
    const std::string where =
        absl::StrCat("group ", group, " rank ", i % options_.group_size, " at ",
                     options_.workers[i].ToString());
    if (!rpc.ok()) {
      problems[group] =
          absl::StrCat(where, " is unreachable: ", rpc.error_message());
    } else if (!status.ready()) {
      problems[group] = absl::StrCat(
          where, " is not ready", status.not_ready_reason().empty() ? "" : ": ",
          status.not_ready_reason());
    } else if (status.group_size() != options_.group_size ||
               status.rank() != static_cast<int>(i) % options_.group_size) {
      problems[group] = absl::StrCat(where, " reports rank ", status.rank(),
                                     " of ", status.group_size());
    } else {
      absl::MutexLock lock(&mu_);
      if (fingerprint_.empty()) {
        fingerprint_ = status.model_fingerprint();
        block_size_ = status.block_size();
        BlockKeying keying;
        keying.block_size = block_size_;
        if (keying.block_size > 0 &&
            Hash128::FromHex(fingerprint_, &keying.fingerprint)) {
          keying_ = keying;
        }
      }
      if (status.model_fingerprint() != fingerprint_) {
        problems[group] = absl::StrCat(
            where, " serves a different model (fingerprint ",
            status.model_fingerprint(), ", expected ", fingerprint_, ")");
      }
    }
  }
  absl::MutexLock lock(&mu_);
  bool any = false;
  int ready = 0;
  for (int g = 0; g < num_groups_; ++g) {
    states_[g].ready = problems[g].empty();
    states_[g].problem = problems[g];
    any = any || states_[g].ready;
    ready += states_[g].ready ? 1 : 0;
  }
  if (options_.on_probe) options_.on_probe(ready);
  if (any != last_ready_) {
    last_ready_ = any;
    if (on_readiness_) on_readiness_(any);
  }
}

void WorkerPool::OnReadinessChange(std::function<void(bool)> callback) {
  absl::MutexLock lock(&mu_);
  on_readiness_ = std::move(callback);
  on_readiness_(last_ready_);
}

bool WorkerPool::AnyReady() const {
  absl::MutexLock lock(&mu_);
  for (const GroupState& state : states_) {
    if (state.ready) return true;
  }
  return false;
}

std::vector<GroupState> WorkerPool::States() const {
  absl::MutexLock lock(&mu_);
  return states_;
}

absl::StatusOr<int> WorkerPool::Acquire(int preferred, int excluded) {
  absl::MutexLock lock(&mu_);
  int best = -1;
  for (int i = 0; i < num_groups_; ++i) {
    const int g = (next_tie_ + i) % num_groups_;
    if (!states_[g].ready || g == excluded) continue;
    if (best < 0 || states_[g].in_flight < states_[best].in_flight) best = g;
  }
  if (best >= 0) next_tie_ = (best + 1) % num_groups_;
  if (best >= 0 && preferred >= 0 && preferred < num_groups_ &&
      preferred != excluded && states_[preferred].ready &&
      states_[preferred].in_flight <=
          states_[best].in_flight + options_.affinity_slack) {
    best = preferred;
  }
  if (best < 0) {
    std::string problems;
    for (const GroupState& state : states_) {
      absl::StrAppend(&problems, problems.empty() ? "" : "; ", state.problem);
    }
    return absl::UnavailableError(
        absl::StrCat("no worker group is ready: ", problems));
  }
  ++states_[best].in_flight;
  return best;
}

void WorkerPool::Release(int group) {
  absl::MutexLock lock(&mu_);
  --states_[group].in_flight;
}

std::string WorkerPool::fingerprint() const {
  absl::MutexLock lock(&mu_);
  return fingerprint_;
}

std::optional<WorkerPool::BlockKeying> WorkerPool::block_keying() const {
  absl::MutexLock lock(&mu_);
  return keying_;
}

int WorkerPool::block_size() const {
  absl::MutexLock lock(&mu_);
  return block_size_;
}

worker::v1::Worker::Stub* WorkerPool::Leader(int group) const {
  return stubs_[static_cast<size_t>(group) * options_.group_size].get();
}

}  // namespace longctx
