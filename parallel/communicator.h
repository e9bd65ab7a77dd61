// Communicator: how the ranks of a worker group exchange data (KV chunks in
// ring prefill, queries and partial attention in decode). One interface, two
// engines: Gloo over TCP between CPU ranks (gloo_communicator.h) and NCCL
// between GPUs.
#ifndef LONGCTX_PARALLEL_COMMUNICATOR_H_
#define LONGCTX_PARALLEL_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace longctx {

// Communicator is used by one thread at a time; requests may complete in any
// order. Every call fails with UNAVAILABLE naming the peer when a peer is gone,
// and with DEADLINE_EXCEEDED when it does not complete within the
// communicator's timeout.
class Communicator {
 public:
  // PendingOp is an asynchronous send or receive. Its buffer must stay valid
  // until Wait returns. Destroying an op that was not waited for aborts it.
  class PendingOp {
   public:
    virtual ~PendingOp() = default;
    // Wait blocks until the op completes or fails, at most the
    // communicator's timeout.
    virtual absl::Status Wait() = 0;
    // WaitFor is Wait with its own limit (a rank idling until the next step
    // waits longer than any transfer may take).
    virtual absl::Status WaitFor(absl::Duration timeout) { return Wait(); }
    // Abort makes a Wait in progress on another thread, or the next one,
    // return ABORTED at once. Thread-safe. The default does nothing (the op's
    // own timeout still binds).
    virtual void Abort() {}
  };

  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Tags from kMaxTag up are the communicator's own (INVALID_ARGUMENT).
  static constexpr uint64_t kMaxTag = uint64_t{1} << 63;

  // Isend starts sending `bytes` bytes to `peer` under `tag`; the peer must
  // post a receive of the same size and tag. Messages between two ranks with
  // equal tags arrive in order.
  virtual absl::StatusOr<std::unique_ptr<PendingOp>> Isend(const void* data,
                                                           size_t bytes,
                                                           int peer,
                                                           uint64_t tag) = 0;
  // Irecv starts receiving `bytes` bytes from `peer` under `tag` into `data`.
  virtual absl::StatusOr<std::unique_ptr<PendingOp>> Irecv(void* data,
                                                           size_t bytes,
                                                           int peer,
                                                           uint64_t tag) = 0;

  // Blocking forms.
  absl::Status Send(const void* data, size_t bytes, int peer, uint64_t tag);
  absl::Status Recv(void* data, size_t bytes, int peer, uint64_t tag);

  // Broadcast copies `bytes` bytes at `data` on `root` to `data` on every rank.
  virtual absl::Status Broadcast(void* data, size_t bytes, int root,
                                 uint64_t tag);

  // Gather collects `bytes` bytes from every rank into `out` on `root`, rank
  // r's bytes at out + r * bytes (`out` is ignored on other ranks).
  virtual absl::Status Gather(const void* data, size_t bytes, void* out,
                              int root, uint64_t tag);

  // Barrier returns once every rank has called it.
  virtual absl::Status Barrier(uint64_t tag);
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_COMMUNICATOR_H_
