// NcclCommunicator: the Communicator between GPU ranks, over NCCL (built only
// with --config=cuda). The NCCL work itself is parallel/nccl_comm.h's
// NcclComm; this adapter adds what the Communicator interface promises:
//
// * Buffers may be device memory (cudaMalloc or managed, of this rank's
//   device), used in place, or host memory (pageable or pinned), staged
//   through pinned and device buffers of the communicator. Device data to
//   send must be ready when Isend is called (its producing work finished);
//   received data is ready when Wait returns.
// * Operations start lazily: the operations posted since the last start begin
//   together, as one NCCL group, when any of them is first waited for. So the
//   operations a rank posts before a Wait must be matched by operations its
//   peers post before their corresponding Wait — true of steps that post every
//   send and receive of an exchange and then wait (a ring hop, an all-to-all,
//   a gather). A receive posted now for a message the peer sends only after a
//   later step would hold the whole group up until the timeout.
// * NCCL has no tags: between two ranks, messages are matched in the order
//   they are posted. Each message carries its tag and size in a small header,
//   and a receive whose message has another tag or size fails with INTERNAL
//   (naming both) and aborts the communicator.
// * A rank may send to itself (the send and its receive must start together,
//   i.e. be posted before the same Wait).
// * Every wait has the communicator's timeout (or WaitFor's): past it, or on
//   an NCCL error (a peer gone), the NCCL communicator is aborted, the call
//   fails with DEADLINE_EXCEEDED or UNAVAILABLE naming the peer, and every
//   later call fails with UNAVAILABLE: the group must be formed again.
// * Destroying an op that has not started cancels it; destroying one that has
//   started waits for its group (at most the timeout), since NCCL cannot
//   cancel one transfer.
//
// Used by one thread at a time (any thread: each call selects the rank's
// device).
#ifndef LONGCTX_PARALLEL_NCCL_COMMUNICATOR_H_
#define LONGCTX_PARALLEL_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"
#include "parallel/rendezvous_store.h"

namespace longctx {

// NcclOptions configures one rank.
struct NcclOptions {
  int rank = 0;
  int size = 1;
  // CUDA device of this rank; -1: the calling thread's current device (device
  // 0 unless set), the usual choice with one visible GPU per process. NCCL
  // allows one rank per device.
  int device = -1;
  // How long each operation may take.
  absl::Duration timeout = absl::Seconds(30);
  // How long forming the group may take; zero means `timeout`.
  absl::Duration connect_timeout = absl::ZeroDuration();
};

class NcclCommunicator : public Communicator {
 public:
  // Connect forms the group through `store`, whose scope must be fresh for
  // each attempt (e.g. "group-0/nccl/<generation>"): every rank publishes its
  // presence, rank 0 publishes NCCL's unique id, and all wait for each other.
  // DEADLINE_EXCEEDED naming the missing ranks if some do not come within
  // the connect timeout.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Connect(
      RendezvousStore& store, const NcclOptions& options);

  // NewUniqueId returns a fresh NCCL unique id (opaque bytes) for Create.
  static absl::StatusOr<std::string> NewUniqueId();
  // Create forms the group from an id every rank already has (tests, or ranks
  // started together by one process).
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      const std::string& unique_id, const NcclOptions& options);

  ~NcclCommunicator() override;

  int rank() const override;
  int size() const override;

  absl::StatusOr<std::unique_ptr<PendingOp>> Isend(const void* data,
                                                   size_t bytes, int peer,
                                                   uint64_t tag) override;
  absl::StatusOr<std::unique_ptr<PendingOp>> Irecv(void* data, size_t bytes,
                                                   int peer,
                                                   uint64_t tag) override;
  // Gather copies the root's own part with cudaMemcpy (data and out may be
  // host or device memory); the rest is Communicator's.
  absl::Status Gather(const void* data, size_t bytes, void* out, int root,
                      uint64_t tag) override;

  struct Impl;

 private:
  explicit NcclCommunicator(std::shared_ptr<Impl> impl);

  std::shared_ptr<Impl> impl_;
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_NCCL_COMMUNICATOR_H_
