#include "parallel/nccl_comm.h"

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace longctx::kernels::cuda {
namespace {

using Code = NcclStatus::Code;

std::string RankName(int rank, int size) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(size);
}

Code CodeOf(ncclResult_t result) {
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return Code::kInvalidArgument;
    case ncclSystemError:  // Sockets, shared memory: a peer or link is gone.
    case ncclRemoteError:  // A peer reported an error or exited.
      return Code::kUnavailable;
    default:  // ncclUnhandledCudaError, ncclInternalError, ...
      return Code::kInternal;
  }
}

// Waits for a non-blocking communicator that is being created to be ready.
NcclStatus SettleInit(ncclComm_t comm, ncclResult_t result, int rank, int size,
                      NcclComm::Clock::time_point deadline) {
  for (int poll = 0;; ++poll) {
    if (result == ncclSuccess) return NcclStatus::Ok();
    if (result != ncclInProgress) {
      return NcclStatus::Error(
          CodeOf(result),
          RankName(rank, size) + " could not join its NCCL group: " +
              ncclGetErrorString(result) + " (" + ncclGetLastError(comm) + ")");
    }
    if (NcclComm::Clock::now() >= deadline) {
      return NcclStatus::Error(
          Code::kDeadlineExceeded,
          RankName(rank, size) +
              ": the NCCL group did not form before the deadline (some rank "
              "did not join, or could not reach the others)");
    }
    NcclPause(poll);
    const ncclResult_t query = ncclCommGetAsyncError(comm, &result);
    if (query != ncclSuccess) result = query;
  }
}

}  // namespace

void NcclPause(int poll) {
  if (poll < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(
        std::chrono::microseconds(poll < 1000 ? 20 : 200));
  }
}

NcclStatus NcclComm::NewUniqueId(ncclUniqueId* id) {
  const ncclResult_t r = ncclGetUniqueId(id);
  if (r != ncclSuccess) {
    return NcclStatus::Error(CodeOf(r), std::string("ncclGetUniqueId: ") +
                                            ncclGetErrorString(r) + " (" +
                                            ncclGetLastError(nullptr) + ")");
  }
  return NcclStatus::Ok();
}

NcclStatus NcclComm::Create(const ncclUniqueId& id, int rank, int size,
                            int device, Clock::time_point deadline,
                            std::unique_ptr<NcclComm>* out) {
  if (size < 1 || rank < 0 || rank >= size) {
    return NcclStatus::Error(Code::kInvalidArgument,
                             "rank " + std::to_string(rank) +
                                 " is outside a group of " +
                                 std::to_string(size));
  }
  int devices = 0;
  cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || device < 0 || device >= devices) {
    return NcclStatus::Error(
        Code::kFailedPrecondition,
        RankName(rank, size) + ": no CUDA device " + std::to_string(device) +
            " (" +
            (e != cudaSuccess ? cudaGetErrorString(e)
                              : std::to_string(devices) + " device(s)") +
            ")");
  }
  e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    return NcclStatus::Error(Code::kInternal, std::string("cudaSetDevice: ") +
                                                  cudaGetErrorString(e));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // Every wait below has a deadline.
  ncclComm_t comm = nullptr;
  ncclUniqueId id_copy = id;
  NcclStatus status = SettleInit(
      comm, ncclCommInitRankConfig(&comm, size, id_copy, rank, &config), rank,
      size, deadline);
  if (!status.ok()) {
    if (comm != nullptr) ncclCommAbort(comm);
    return status;
  }
  cudaStream_t stream = nullptr;
  cudaEvent_t event = nullptr;
  int* word = nullptr;
  e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) {
    e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  }
  if (e == cudaSuccess)
    e = cudaMalloc(reinterpret_cast<void**>(&word), sizeof(int));
  if (e != cudaSuccess) {
    ncclCommAbort(comm);
    if (word != nullptr) cudaFree(word);
    if (event != nullptr) cudaEventDestroy(event);
    if (stream != nullptr) cudaStreamDestroy(stream);
    return NcclStatus::Error(
        Code::kResourceExhausted,
        RankName(rank, size) + ": " + cudaGetErrorString(e));
  }
  out->reset(new NcclComm(comm, rank, size, device, stream, event, word));
  return NcclStatus::Ok();
}

NcclComm::NcclComm(ncclComm_t comm, int rank, int size, int device,
                   cudaStream_t stream, cudaEvent_t event, int* barrier_word)
    : comm_(comm),
      rank_(rank),
      size_(size),
      device_(device),
      stream_(stream),
      event_(event),
      barrier_word_(barrier_word) {}

NcclComm::~NcclComm() {
  cudaSetDevice(device_);
  if (comm_ != nullptr) {
    // Finalize waits for this rank's operations and its peers' matching ones;
    // if that does not happen soon, abort.
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
    ncclResult_t state = ncclCommFinalize(comm_);
    for (int poll = 0; state == ncclInProgress && Clock::now() < deadline;
         ++poll) {
      NcclPause(poll);
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  // The stream's NCCL work has ended (finalized or aborted).
  cudaStreamSynchronize(stream_);
  cudaFree(barrier_word_);
  cudaEventDestroy(event_);
  cudaStreamDestroy(stream_);
}

void NcclComm::Abort(const std::string& why) {
  if (comm_ == nullptr) return;
  cudaSetDevice(device_);
  ncclCommAbort(comm_);
  comm_ = nullptr;
  abort_reason_ = why;
}

NcclStatus NcclComm::Usable() {
  if (comm_ == nullptr) {
    return NcclStatus::Error(Code::kUnavailable,
                             "the NCCL communicator of " +
                                 RankName(rank_, size_) +
                                 " was aborted: " + abort_reason_);
  }
  const cudaError_t e = cudaSetDevice(device_);
  if (e != cudaSuccess) {
    return NcclStatus::Error(Code::kInternal, std::string("cudaSetDevice: ") +
                                                  cudaGetErrorString(e));
  }
  return NcclStatus::Ok();
}

NcclStatus NcclComm::FromNccl(ncclResult_t result, const std::string& what) {
  const std::string message = what + " failed on " + RankName(rank_, size_) +
                              ": NCCL " + ncclGetErrorString(result) + " (" +
                              ncclGetLastError(comm_) + ")";
  // After an error nothing can be assumed about operations in flight.
  Abort(message);
  return NcclStatus::Error(CodeOf(result), message);
}

NcclStatus NcclComm::Settle(ncclResult_t result, const std::string& what,
                            Clock::time_point deadline) {
  for (int poll = 0;; ++poll) {
    if (result == ncclSuccess) return NcclStatus::Ok();
    if (result != ncclInProgress) return FromNccl(result, what);
    if (Clock::now() >= deadline) {
      const std::string message =
          what + " on " + RankName(rank_, size_) +
          " did not start before the deadline (a peer did not take part)";
      Abort(message);
      return NcclStatus::Error(Code::kDeadlineExceeded, message);
    }
    NcclPause(poll);
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &result);
    if (query != ncclSuccess) result = query;
  }
}

NcclStatus NcclComm::Enqueue(const std::vector<NcclP2p>& ops,
                             cudaStream_t stream, Clock::time_point deadline) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  for (const NcclP2p& op : ops) {
    if (op.peer < 0 || op.peer >= size_ ||
        (op.data == nullptr && op.bytes > 0)) {
      return NcclStatus::Error(Code::kInvalidArgument,
                               "bad point-to-point operation: peer " +
                                   std::to_string(op.peer) + " of " +
                                   std::to_string(size_) + ", " +
                                   std::to_string(op.bytes) + " bytes");
    }
  }
  ncclResult_t r = ncclGroupStart();
  if (r != ncclSuccess) return FromNccl(r, "ncclGroupStart");
  for (const NcclP2p& op : ops) {
    if (op.bytes == 0) continue;  // Both sides skip an empty message.
    r = op.kind == NcclP2p::Kind::kSend
            ? ncclSend(op.data, op.bytes, ncclInt8, op.peer, comm_, stream)
            : ncclRecv(op.data, op.bytes, ncclInt8, op.peer, comm_, stream);
    if (r != ncclSuccess && r != ncclInProgress) {
      ncclGroupEnd();
      return FromNccl(
          r, op.kind == NcclP2p::Kind::kSend ? "ncclSend" : "ncclRecv");
    }
  }
  return Settle(ncclGroupEnd(), "a group of sends and receives", deadline);
}

NcclStatus NcclComm::Wait(cudaEvent_t event, Clock::time_point deadline,
                          const std::string& what) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  for (int poll = 0;; ++poll) {
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return NcclStatus::Ok();
    if (e != cudaErrorNotReady) {
      const std::string message = what + " on " + RankName(rank_, size_) +
                                  ": CUDA " + cudaGetErrorString(e);
      Abort(message);
      return NcclStatus::Error(Code::kInternal, message);
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) state = query;
    if (state != ncclSuccess && state != ncclInProgress) {
      return FromNccl(state, what);
    }
    if (Clock::now() >= deadline) {
      const std::string message = what + " on " + RankName(rank_, size_) +
                                  " did not complete before the deadline";
      Abort(message);
      return NcclStatus::Error(Code::kDeadlineExceeded, message);
    }
    NcclPause(poll);
  }
}

NcclStatus NcclComm::Synchronize(cudaStream_t stream,
                                 Clock::time_point deadline,
                                 const std::string& what) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  const cudaError_t e = cudaEventRecord(event_, stream);
  if (e != cudaSuccess) {
    return NcclStatus::Error(
        Code::kInternal, what + ": cudaEventRecord: " + cudaGetErrorString(e));
  }
  return Wait(event_, deadline, what);
}

NcclStatus NcclComm::Broadcast(void* data, size_t bytes, int root,
                               cudaStream_t stream,
                               Clock::time_point deadline) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  if (root < 0 || root >= size_ || (data == nullptr && bytes > 0)) {
    return NcclStatus::Error(Code::kInvalidArgument,
                             "broadcast from rank " + std::to_string(root) +
                                 " of " + std::to_string(size_));
  }
  if (bytes == 0) return NcclStatus::Ok();
  status =
      Settle(ncclBroadcast(data, data, bytes, ncclInt8, root, comm_, stream),
             "broadcast", deadline);
  if (!status.ok()) return status;
  return Synchronize(stream, deadline, "broadcast");
}

NcclStatus NcclComm::Gather(const void* data, size_t bytes, void* out, int root,
                            cudaStream_t stream, Clock::time_point deadline) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  if (root < 0 || root >= size_ || (bytes > 0 && data == nullptr) ||
      (bytes > 0 && rank_ == root && out == nullptr)) {
    return NcclStatus::Error(Code::kInvalidArgument,
                             "gather to rank " + std::to_string(root) + " of " +
                                 std::to_string(size_));
  }
  if (bytes == 0) return NcclStatus::Ok();
  std::vector<NcclP2p> ops;
  if (rank_ != root) {
    ops.push_back({NcclP2p::Kind::kSend, const_cast<void*>(data), bytes, root});
  } else {
    auto* base = static_cast<char*>(out);
    const cudaError_t e =
        cudaMemcpyAsync(base + static_cast<size_t>(root) * bytes, data, bytes,
                        cudaMemcpyDeviceToDevice, stream);
    if (e != cudaSuccess) {
      return NcclStatus::Error(Code::kInternal,
                               std::string("gather: ") + cudaGetErrorString(e));
    }
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == root) continue;
      ops.push_back({NcclP2p::Kind::kRecv,
                     base + static_cast<size_t>(peer) * bytes, bytes, peer});
    }
  }
  status = Enqueue(ops, stream, deadline);
  if (!status.ok()) return status;
  return Synchronize(stream, deadline, "gather");
}

NcclStatus NcclComm::Barrier(cudaStream_t stream, Clock::time_point deadline) {
  NcclStatus status = Usable();
  if (!status.ok()) return status;
  const cudaError_t e = cudaMemsetAsync(barrier_word_, 0, sizeof(int), stream);
  if (e != cudaSuccess) {
    return NcclStatus::Error(Code::kInternal,
                             std::string("barrier: ") + cudaGetErrorString(e));
  }
  status = Settle(ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt,
                                ncclSum, comm_, stream),
                  "barrier", deadline);
  if (!status.ok()) return status;
  return Synchronize(stream, deadline, "barrier");
}

}  // namespace longctx::kernels::cuda
