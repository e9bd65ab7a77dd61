// NcclComm: one rank's NCCL communicator with deadlines — the part of the
// GPU communicator that needs only CUDA, NCCL and the C++ standard library, so
// that the standalone test (nccl_selftest.cc) builds on a GPU machine without
// the rest of longctx. parallel/nccl_communicator.h adapts it to the
// Communicator interface (tags, host buffers, absl::Status).
//
// The communicator is created non-blocking (NCCL >= 2.14): no call waits
// without a deadline. When a deadline passes, or NCCL reports an error (a
// peer that is gone, a network error), the communicator is aborted and every
// later call fails; the group must be formed again.
//
// Point-to-point operations carry no tags: between two ranks, sends and
// receives are matched in the order they are enqueued, and must agree in
// size. Operations enqueued together form one NCCL group (ncclGroupStart/
// End), so a rank may send to and receive from its peers at once without
// deadlock. All data pointers are device memory of this rank's device.
//
// Not thread-safe: one thread at a time (any thread; every call selects the
// communicator's device).
#ifndef LONGCTX_PARALLEL_NCCL_COMM_H_
#define LONGCTX_PARALLEL_NCCL_COMM_H_

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "NcclComm needs NCCL 2.14 or newer (non-blocking communicators)"
#endif

namespace longctx::kernels::cuda {

// NcclStatus is the outcome of an NcclComm call; the codes map one to one onto
// absl::StatusCode names.
struct NcclStatus {
  enum class Code {
    kOk,
    kInvalidArgument,
    kDeadlineExceeded,
    kFailedPrecondition,
    kResourceExhausted,
    kUnavailable,
    kInternal,
  };
  Code code = Code::kOk;
  std::string message;

  bool ok() const { return code == Code::kOk; }
  static NcclStatus Ok() { return {}; }
  static NcclStatus Error(Code code, std::string message) {
    return {code, std::move(message)};
  }
};

// NcclP2p is one point-to-point operation of a group.
struct NcclP2p {
  enum class Kind { kSend, kRecv };
  Kind kind = Kind::kSend;
  void* data = nullptr;  // Device memory; read by a send, written by a recv.
  size_t bytes = 0;      // 0 is allowed and transfers nothing.
  int peer = 0;          // May be this rank: a send to self and the matching
                         // receive must then be in the same group.
};

class NcclComm {
 public:
  using Clock = std::chrono::steady_clock;

  // NewUniqueId makes the id that every rank of a new group passes to Create
  // (rank 0 makes it and the others learn it out of band).
  static NcclStatus NewUniqueId(ncclUniqueId* id);

  // Create joins rank `rank` of `size` ranks on CUDA device `device`, all
  // calling with the same id. DEADLINE_EXCEEDED if the group has not formed
  // by `deadline` (NCCL cannot say which ranks are missing).
  static NcclStatus Create(const ncclUniqueId& id, int rank, int size,
                           int device, Clock::time_point deadline,
                           std::unique_ptr<NcclComm>* out);

  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  // Finalizes and destroys the communicator, waiting a few seconds at most for
  // its operations to end, else aborts it.
  ~NcclComm();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  // The communicator's own stream (non-blocking), for callers without one.
  cudaStream_t stream() const { return stream_; }
  bool aborted() const { return comm_ == nullptr; }

  // Enqueue enqueues `ops` as one group on `stream` and returns when they are
  // on the stream (connecting to a new peer may take until `deadline`), not
  // when they complete: wait for that with Synchronize or an event.
  NcclStatus Enqueue(const std::vector<NcclP2p>& ops, cudaStream_t stream,
                     Clock::time_point deadline);

  // Wait blocks until `event` has completed, watching for NCCL errors; `what`
  // names the operation in errors.
  NcclStatus Wait(cudaEvent_t event, Clock::time_point deadline,
                  const std::string& what);

  // Synchronize waits for everything enqueued so far on `stream`.
  NcclStatus Synchronize(cudaStream_t stream, Clock::time_point deadline,
                         const std::string& what);

  // Collectives, enqueued on `stream` and waited for. Broadcast copies `bytes`
  // at `data` on `root` to `data` on every rank (ncclBroadcast). Gather puts
  // every rank's `bytes` at out + r * bytes on `root` (sends and receives; out
  // is ignored elsewhere and must not overlap data). Barrier returns once
  // every rank has called it (an all-reduce of one int).
  NcclStatus Broadcast(void* data, size_t bytes, int root, cudaStream_t stream,
                       Clock::time_point deadline);
  NcclStatus Gather(const void* data, size_t bytes, void* out, int root,
                    cudaStream_t stream, Clock::time_point deadline);
  NcclStatus Barrier(cudaStream_t stream, Clock::time_point deadline);

  // Abort aborts the communicator (in-flight operations end); later calls
  // fail with UNAVAILABLE quoting `why`.
  void Abort(const std::string& why);

 private:
  NcclComm(ncclComm_t comm, int rank, int size, int device, cudaStream_t stream,
           cudaEvent_t event, int* barrier_word);

  // Usable returns OK, or why the communicator cannot be used, after making
  // the device current.
  NcclStatus Usable();
  // Settle waits until a call that returned `result` is done (non-blocking
  // communicators answer ncclInProgress while they work), then maps errors.
  NcclStatus Settle(ncclResult_t result, const std::string& what,
                    Clock::time_point deadline);
  NcclStatus FromNccl(ncclResult_t result, const std::string& what);

  ncclComm_t comm_;  // Null once aborted.
  const int rank_;
  const int size_;
  const int device_;
  cudaStream_t stream_;
  cudaEvent_t event_;  // For Synchronize.
  int* barrier_word_;  // One int of device memory.
  std::string abort_reason_;
};

// Pause backs off in polling loops: yields for the first polls, then sleeps a
// little.
void NcclPause(int poll);

}  // namespace longctx::kernels::cuda

#endif  // LONGCTX_PARALLEL_NCCL_COMM_H_
