// WorkerPool: the gateway's view of its worker groups. It keeps a channel to
// every rank, probes each rank's status in the background and picks the least
// loaded group that is ready for a new request.
#ifndef LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_
#define LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/worker.grpc.pb.h"
#include "services/common/net_address.h"
#include "services/common/tls.h"

namespace longctx {

// WorkerPoolOptions configures a WorkerPool.
struct WorkerPoolOptions {
  // Every rank's address, group after group: ranks 0..P-1 of group 0, then of
  // group 1…
  std::vector<HostPort> workers;
  // Ranks per group (P). workers.size() must be a multiple of it.
  int group_size = 1;
  // How often each rank is probed, and how long a probe may take.
  absl::Duration probe_interval = absl::Seconds(1);
  absl::Duration probe_timeout = absl::Seconds(1);
  // Credentials of the channels to the ranks. Default: plaintext.
  ChannelSecurity channel_security;
};

// GroupState is what the last probes said about one group.
struct GroupState {
  bool ready = false;   // Every rank answered and said ready.
  std::string problem;  // Why not ready, naming the rank and address.
  int in_flight = 0;    // Requests the gateway has running on the group.
};

// WorkerPool is thread-safe. Its probe thread stops in the destructor.
class WorkerPool {
 public:
  // Create validates the options and starts probing. INVALID_ARGUMENT if there
  // are no workers or their count is not a multiple of group_size.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(
      const WorkerPoolOptions& options);

  ~WorkerPool();

  int num_groups() const { return num_groups_; }
  int group_size() const { return options_.group_size; }

  // ProbeOnce probes every rank now (the background thread calls it
  // periodically).
  void ProbeOnce();

  // OnReadinessChange calls `callback(AnyReady())` now and whenever it changes
  // afterwards, from the probe thread. Replaces any earlier callback.
  void OnReadinessChange(std::function<void(bool)> callback);

  // AnyReady says whether at least one group is ready.
  bool AnyReady() const;

  // States returns a copy of every group's state.
  std::vector<GroupState> States() const;

  // Acquire picks the ready group with the fewest requests in flight and counts
  // one more on it. UNAVAILABLE, with each group's problem, when no group is
  // ready.
  absl::StatusOr<int> Acquire();

  // Release ends a request counted by Acquire.
  void Release(int group);

  // fingerprint returns the model fingerprint (hex) the ready workers report,
  // or
  // "" before any was ready. A group whose ranks report another fingerprint
  // than the first one seen is not ready ("serves a different model").
  std::string fingerprint() const;

  // Leader returns the stub of rank 0 of `group`, through which requests go.
  worker::v1::Worker::Stub* Leader(int group) const;

 private:
  explicit WorkerPool(const WorkerPoolOptions& options);
  void ProbeLoop();

  const WorkerPoolOptions options_;
  const int num_groups_;
  std::vector<std::unique_ptr<worker::v1::Worker::Stub>> stubs_;  // Per rank.

  mutable absl::Mutex mu_;
  std::vector<GroupState> states_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> on_readiness_ ABSL_GUARDED_BY(mu_);
  bool last_ready_ ABSL_GUARDED_BY(mu_) = false;
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);
  std::thread prober_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_
