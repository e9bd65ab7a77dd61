// WorkerGroup: this process's rank of a worker group of P ranks that hold one
// long sequence together (context parallelism, ring_attention.h).
//
// The group forms through the gateway's rendezvous service: rank 0 (the
// leader) publishes a new generation number, every rank joins that
// generation's Gloo group, and the leader then sends one StepPlan per engine
// step (a ping when idle). When any rank fails, the others notice (a broken
// connection, a missed ping, a failed step), drop the group and form a new
// generation, waiting for the missing rank to come back.
//
// On the leader, GroupForwardModel is the engine's model: the engine allocates
// block ids from the group's id space (an unbacked pool of P x the per-rank
// capacity) and the model places each block on a rank (BlockPlacer) the first
// time it is written.
#ifndef LONGCTX_PARALLEL_WORKER_GROUP_H_
#define LONGCTX_PARALLEL_WORKER_GROUP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/forward_model.h"
#include "engine/kv_block_pool.h"
#include "engine/kv_offloader.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "parallel/group_leader.h"
#include "parallel/ring_attention.h"
#include "services/common/tls.h"

namespace longctx {

// WorkerGroupOptions configures a rank's membership.
struct WorkerGroupOptions {
  std::string group_id = "group-0";  // --group_id
  int rank = 0;                      // --rank
  int size = 1;                      // --group_size
  // The gateway's rendezvous service, host:port (--rendezvous_address).
  std::string rendezvous_address;
  // Credentials of the channels to it (--internal_tls_*). Default: plaintext.
  ChannelSecurity rendezvous_security;
  // Address peers reach this rank's Gloo listener at (--gloo_hostname).
  std::string hostname = "127.0.0.1";
  // How long one attempt to form the group waits for every rank
  // (--group_form_timeout_seconds).
  absl::Duration form_timeout = absl::Seconds(20);
  // How long one transfer between ranks may take (--group_op_timeout_seconds).
  absl::Duration op_timeout = absl::Seconds(60);
  // The leader pings an idle group this often; a rank that hears nothing for
  // 10 intervals drops the group.
  absl::Duration heartbeat = absl::Seconds(1);
  RingOptions ring;
};

class WorkerGroup {
 public:
  // on_ready(ready, why) is called from the group's thread whenever the rank
  // joins or leaves a formed group. `model` and `pool` (this rank's blocks)
  // are not owned and must outlive the group; only the leader's engine may
  // use the model while the group runs (through forward_model()).
  // `io` (may be null: no memory store) moves this rank's blocks to and from
  // the store.
  WorkerGroup(const WorkerGroupOptions& options, LlamaModel* model,
              KvBlockPool* pool, KvOffloader* io,
              std::function<void(bool ready, const std::string& why)> on_ready);
  // Stops the group (the leader tells the other ranks it is leaving).
  ~WorkerGroup();

  // Leader only: the engine's model and block-id pool.
  ForwardModel* forward_model();
  KvBlockPool* group_pool() { return group_pool_.get(); }
  // Leader with a store only (else null): the engine's offload and restore,
  // which every rank does for the blocks it holds.
  KvStoreIo* store_io();

  // Counters of this rank's ring traffic (steps, bytes sent, waits) since it
  // started, over every generation of its group; current after each step.
  RingStats stats() const;

 private:
  void Run();
  // One generation: returns when the group breaks or the rank stops.
  void Lead(std::unique_ptr<Communicator> comm);
  void Follow(std::unique_ptr<Communicator> comm);
  bool stopping() const;
  void SetReady(bool ready, const std::string& why);
  void AddStats(const RingStats& more);

  const WorkerGroupOptions options_;
  LlamaModel* const model_;
  KvBlockPool* const pool_;
  const std::function<void(bool, const std::string&)> on_ready_;
  std::unique_ptr<KvBlockPool> group_pool_;  // Leader: ids over the group.
  KvOffloader* const io_;
  std::unique_ptr<GroupLeader> leader_;  // Rank 0 only.

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // Run has returned.
  // Follower: the receive of the leader's next plan while it waits for it,
  // which the destructor aborts.
  Communicator::PendingOp* pending_recv_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Followers: every generation's counters, the current one's included.
  // Leader: the ended generations' (the current one's are the leader's).
  RingStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_WORKER_GROUP_H_
