// WorkerPool: the gateway's view of its worker groups. It keeps a channel to
// every rank, probes each rank's status in the background and picks a ready
// group for each new request: the one the caller prefers (the group holding the
// prompt's prefix in memory) when it has room, else the least loaded one.
#ifndef LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_
#define LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kvblock/hash128.h"
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
  // Called after every round of probes with the number of ready groups (from
  // the probe thread, under the pool's lock: it must not call the pool).
  std::function<void(int ready_groups)> on_probe;
  // Credentials of the channels to the ranks. Default: plaintext.
  ChannelSecurity channel_security;
  // A preferred group has room when it has at most this many more requests in
  // flight than the least loaded ready group (--prefix_affinity_slack).
  // Default: 4.
  int affinity_slack = 4;
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

  // Acquire picks a ready group and counts one more request on it: `preferred`
  // (a group index, or -1) when it is ready and has room (affinity_slack),
  // otherwise the ready group with the fewest requests in flight, ties taken
  // in turn; never `excluded` (a group index, or -1). UNAVAILABLE, with each
  // group's problem, when no other group is ready.
  absl::StatusOr<int> Acquire(int preferred = -1, int excluded = -1);

  // Release ends a request counted by Acquire.
  void Release(int group);

  // fingerprint returns the model fingerprint (hex) the ready workers report,
  // or "" before any was ready. A group whose ranks report another fingerprint
  // than the first one seen is not ready ("serves a different model").
  std::string fingerprint() const;

  // BlockKeying is what hashes a prompt's block keys: the fingerprint, parsed
  // once when the first worker reported it, and the block size.
  struct BlockKeying {
    Hash128 fingerprint;
    int block_size = 0;
  };
  // block_keying returns it, or nullopt before a ready worker reported a
  // well-formed fingerprint and a positive block size.
  std::optional<BlockKeying> block_keying() const;

  // block_size returns the tokens per KV block the first ready worker
  // reported, or 0 before any was ready.
  int block_size() const;

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
  std::optional<BlockKeying> keying_ ABSL_GUARDED_BY(mu_);
  int block_size_ ABSL_GUARDED_BY(mu_) = 0;
  int next_tie_ ABSL_GUARDED_BY(mu_) = 0;  // Where Acquire's scan starts.
  std::thread prober_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_WORKER_POOL_H_
