#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/nccl_comm.h"

namespace longctx {
namespace {

namespace kc = kernels::cuda;
using Clock = kc::NcclComm::Clock;

// Every message is preceded by a header, sent in the same group, so that the
// receiver can check it got the message it expected.
constexpr uint64_t kMagic = 0x6c6f6e6763747831ull;  // "longctx1"
struct WireHeader {
  uint64_t magic;
  uint64_t tag;
  uint64_t bytes;
  uint64_t from;
};
constexpr size_t kHeaderSlot = 32;
static_assert(sizeof(WireHeader) == kHeaderSlot, "header slot");
constexpr size_t kAlign = 256;
constexpr size_t kMinArena = size_t{64} << 10;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

absl::Status ToStatus(const kc::NcclStatus& s) {
  using Code = kc::NcclStatus::Code;
  switch (s.code) {
    case Code::kOk:
      return absl::OkStatus();
    case Code::kInvalidArgument:
      return absl::InvalidArgumentError(s.message);
    case Code::kDeadlineExceeded:
      return absl::DeadlineExceededError(s.message);
    case Code::kFailedPrecondition:
      return absl::FailedPreconditionError(s.message);
    case Code::kResourceExhausted:
      return absl::ResourceExhaustedError(s.message);
    case Code::kUnavailable:
      return absl::UnavailableError(s.message);
    case Code::kInternal:
      return absl::InternalError(s.message);
  }
  return absl::InternalError(s.message);
}

// Deadlines are capped at 30 days so that "infinite" durations do not
// overflow the clock.
Clock::time_point DeadlineAfter(absl::Duration d) {
  d = std::min(d, absl::Hours(24 * 30));
  return Clock::now() + std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

absl::Status CudaError(absl::string_view what, cudaError_t e) {
  return absl::InternalError(
      absl::StrCat(what, ": CUDA ", cudaGetErrorString(e)));
}

// DevicePointer says whether p is memory a CUDA device can use in place
// (device or managed memory), and which device.
bool DevicePointer(const void* p, int* device) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // Older runtimes fail on pageable memory: host.
    return false;
  }
  *device = attr.device;
  return attr.type == cudaMemoryTypeDevice ||
         attr.type == cudaMemoryTypeManaged;
}

// Arena is the staging memory of one group: headers and host buffers' data,
// in pinned host memory and device memory at the same offsets, and the event
// that marks the group's end on the stream.
struct Arena {
  char* device = nullptr;
  char* host = nullptr;
  size_t capacity = 0;
  cudaEvent_t done = nullptr;
};

void FreeArena(Arena* a) {
  if (a->device != nullptr) cudaFree(a->device);
  if (a->host != nullptr) cudaFreeHost(a->host);
  if (a->done != nullptr) cudaEventDestroy(a->done);
  a->device = nullptr;
  a->host = nullptr;
  a->done = nullptr;
}

}  // namespace

struct NcclCommunicator::Impl {
  struct Batch;

  // Op is one posted send or receive.
  struct Op {
    bool is_send = false;
    void* user = nullptr;
    size_t bytes = 0;
    int peer = 0;
    uint64_t tag = 0;
    bool on_device = false;  // user is device memory, used in place.
    // Set when the op's group starts.
    std::shared_ptr<Batch> batch;
    size_t header_offset = 0;
    size_t stage_offset = 0;  // For host memory.
    bool finished = false;
    absl::Status status;

    std::string Describe() const {
      return absl::StrCat(is_send ? "send to" : "receive from", " rank ", peer,
                          " (tag ", tag, ", ", bytes, " bytes)");
    }
  };

  // Batch is one started group; its ops share it.
  struct Batch {
    Impl* impl;
    std::unique_ptr<Arena> arena;
    bool waited = false;  // The group's end has been waited for.
    absl::Status status;  // Of that wait.

    Batch(Impl* i, std::unique_ptr<Arena> a) : impl(i), arena(std::move(a)) {}
    ~Batch() { impl->Release(std::move(arena), waited && status.ok()); }
  };

  Impl(std::unique_ptr<kc::NcclComm> c, const NcclOptions& options)
      : comm(std::move(c)),
        rank(options.rank),
        size(options.size),
        device(comm->device()),
        timeout(options.timeout) {}

  ~Impl() {
    // Aborting or finalizing the communicator ends its stream's work; only
    // then may the staging memory go.
    comm.reset();
    cudaSetDevice(device);
    for (auto& a : free_arenas) FreeArena(a.get());
    for (auto& a : quarantine) FreeArena(a.get());
  }

  // Break makes the communicator unusable after `status`.
  absl::Status Break(absl::Status status) {
    if (broken.ok()) {
      broken = absl::UnavailableError(
          absl::StrCat("the NCCL communicator of rank ", rank, " of ", size,
                       " failed and must be formed again: ", status.message()));
    }
    comm->Abort(std::string(status.message()));
    return status;
  }

  absl::Status Usable() {
    if (!broken.ok()) return broken;
    if (comm->aborted()) return Break(absl::UnavailableError("aborted"));
    const cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return CudaError("cudaSetDevice", e);
    return absl::OkStatus();
  }

  void Release(std::unique_ptr<Arena> arena, bool completed) {
    --live_batches;
    if (arena == nullptr) return;
    // An arena whose group may still be running cannot be reused; it is
    // freed once the communicator is gone.
    (completed ? free_arenas : quarantine).push_back(std::move(arena));
  }

  absl::StatusOr<std::unique_ptr<Arena>> TakeArena(size_t need) {
    int best = -1;
    for (size_t i = 0; i < free_arenas.size(); ++i) {
      if (free_arenas[i]->capacity >= need &&
          (best < 0 ||
           free_arenas[i]->capacity < free_arenas[best]->capacity)) {
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      std::unique_ptr<Arena> a = std::move(free_arenas[best]);
      free_arenas.erase(free_arenas.begin() + best);
      return a;
    }
    // None is big enough. cudaFree waits for the device, so the small ones are
    // only freed when no group is in flight (it could wait for a peer).
    if (live_batches == 0) {
      for (auto& a : free_arenas) FreeArena(a.get());
      free_arenas.clear();
    }
    auto a = std::make_unique<Arena>();
    size_t capacity = kMinArena;
    while (capacity < need) capacity *= 2;
    cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&a->device), capacity);
    if (e == cudaSuccess) {
      e = cudaMallocHost(reinterpret_cast<void**>(&a->host), capacity);
    }
    if (e == cudaSuccess) {
      e = cudaEventCreateWithFlags(&a->done, cudaEventDisableTiming);
    }
    if (e != cudaSuccess) {
      FreeArena(a.get());
      return absl::ResourceExhaustedError(absl::StrCat(
          "staging buffers of ", capacity, " bytes: ", cudaGetErrorString(e)));
    }
    a->capacity = capacity;
    return a;
  }

  // Start starts every pending op as one NCCL group.
  absl::Status Start(Clock::time_point deadline) {
    if (pending.empty()) return absl::OkStatus();
    std::vector<std::shared_ptr<Op>> ops;
    ops.swap(pending);
    size_t offset = AlignUp(ops.size() * kHeaderSlot);
    for (size_t i = 0; i < ops.size(); ++i) {
      Op& op = *ops[i];
      op.header_offset = i * kHeaderSlot;
      if (!op.on_device && op.bytes > 0) {
        op.stage_offset = offset;
        offset = AlignUp(offset + op.bytes);
      }
    }
    absl::StatusOr<std::unique_ptr<Arena>> taken = TakeArena(offset);
    if (!taken.ok()) return Break(taken.status());
    std::unique_ptr<Arena> arena = *std::move(taken);
    cudaStream_t stream = comm->stream();
    // Headers and the data of host buffers to send, to the device.
    for (const auto& op : ops) {
      WireHeader header{};
      if (op->is_send) {
        header = {kMagic, op->tag, op->bytes, static_cast<uint64_t>(rank)};
        if (!op->on_device && op->bytes > 0) {
          std::memcpy(arena->host + op->stage_offset, op->user, op->bytes);
        }
      }
      std::memcpy(arena->host + op->header_offset, &header, sizeof(header));
    }
    cudaError_t e =
        cudaMemcpyAsync(arena->device, arena->host, ops.size() * kHeaderSlot,
                        cudaMemcpyHostToDevice, stream);
    for (const auto& op : ops) {
      if (e != cudaSuccess) break;
      if (op->is_send && !op->on_device && op->bytes > 0) {
        e = cudaMemcpyAsync(arena->device + op->stage_offset,
                            arena->host + op->stage_offset, op->bytes,
                            cudaMemcpyHostToDevice, stream);
      }
    }
    if (e != cudaSuccess) {
      free_arenas.push_back(std::move(arena));  // Nothing started on it.
      return Break(CudaError("staging", e));
    }
    std::vector<kc::NcclP2p> p2p;
    p2p.reserve(2 * ops.size());
    for (const auto& op : ops) {
      const auto kind =
          op->is_send ? kc::NcclP2p::Kind::kSend : kc::NcclP2p::Kind::kRecv;
      p2p.push_back(
          {kind, arena->device + op->header_offset, kHeaderSlot, op->peer});
      p2p.push_back(
          {kind, op->on_device ? op->user : arena->device + op->stage_offset,
           op->bytes, op->peer});
    }
    const kc::NcclStatus started = comm->Enqueue(p2p, stream, deadline);
    if (!started.ok()) {
      quarantine.push_back(std::move(arena));
      return Break(ToStatus(started));
    }
    // Received headers and host buffers' data, back to the host.
    e = cudaMemcpyAsync(arena->host, arena->device, ops.size() * kHeaderSlot,
                        cudaMemcpyDeviceToHost, stream);
    for (const auto& op : ops) {
      if (e != cudaSuccess) break;
      if (!op->is_send && !op->on_device && op->bytes > 0) {
        e = cudaMemcpyAsync(arena->host + op->stage_offset,
                            arena->device + op->stage_offset, op->bytes,
                            cudaMemcpyDeviceToHost, stream);
      }
    }
    if (e == cudaSuccess) e = cudaEventRecord(arena->done, stream);
    if (e != cudaSuccess) {
      quarantine.push_back(std::move(arena));
      return Break(CudaError("staging", e));
    }
    ++live_batches;
    auto batch = std::make_shared<Batch>(this, std::move(arena));
    for (const auto& op : ops) op->batch = batch;
    return absl::OkStatus();
  }

  absl::Status Wait(Op& op, absl::Duration limit) {
    if (op.finished) return op.status;
    const Clock::time_point deadline = DeadlineAfter(limit);
    if (op.batch == nullptr) {
      absl::Status status = Usable();
      if (status.ok()) status = Start(deadline);
      if (!status.ok()) return Finish(op, status);
    }
    Batch& batch = *op.batch;
    if (!batch.waited) {
      const kc::NcclStatus s =
          comm->Wait(batch.arena->done, deadline, op.Describe());
      batch.waited = true;
      batch.status = ToStatus(s);
      if (!s.ok()) Break(batch.status).IgnoreError();
    }
    if (!batch.status.ok()) return Finish(op, batch.status);
    if (!op.is_send) {
      WireHeader h;
      std::memcpy(&h, batch.arena->host + op.header_offset, sizeof(h));
      if (h.magic != kMagic || h.tag != op.tag || h.bytes != op.bytes ||
          h.from != static_cast<uint64_t>(op.peer)) {
        return Finish(
            op, Break(absl::InternalError(absl::StrCat(
                    op.Describe(), " got a message with tag ", h.tag, " and ",
                    h.bytes, " bytes from rank ", h.from,
                    h.magic != kMagic ? " (not a longctx header)" : "",
                    ": messages between two ranks match in the order they "
                    "are posted"))));
      }
      if (!op.on_device && op.bytes > 0) {
        std::memcpy(op.user, batch.arena->host + op.stage_offset, op.bytes);
      }
    }
    return Finish(op, absl::OkStatus());
  }

  absl::Status Finish(Op& op, absl::Status status) {
    op.finished = true;
    op.status = status;
    op.batch.reset();
    return status;
  }

  // Drop forgets an op whose PendingOp is destroyed.
  void Drop(const std::shared_ptr<Op>& op) {
    if (op->finished) return;
    if (op->batch == nullptr) {  // Not started: cancel it.
      pending.erase(std::remove(pending.begin(), pending.end(), op),
                    pending.end());
      op->finished = true;
      return;
    }
    // Started: NCCL cannot cancel one transfer; wait for the group.
    Batch& batch = *op->batch;
    if (!batch.waited && cudaSetDevice(device) == cudaSuccess) {
      const kc::NcclStatus s =
          comm->Wait(batch.arena->done, DeadlineAfter(timeout), op->Describe());
      batch.waited = true;
      batch.status = ToStatus(s);
      if (!s.ok()) Break(batch.status).IgnoreError();
    }
    Finish(*op, batch.status).IgnoreError();
  }

  // Post queues `op` and returns its handle.
  static absl::StatusOr<std::unique_ptr<Communicator::PendingOp>> Post(
      const std::shared_ptr<Impl>& impl, std::shared_ptr<Op> op);

  std::unique_ptr<kc::NcclComm> comm;
  const int rank;
  const int size;
  const int device;
  const absl::Duration timeout;
  absl::Status broken;  // Once not OK, every call returns it.
  std::vector<std::shared_ptr<Op>> pending;  // Posted, not started.
  std::vector<std::unique_ptr<Arena>> free_arenas;
  std::vector<std::unique_ptr<Arena>> quarantine;
  int live_batches = 0;
};

namespace {

class NcclOp : public Communicator::PendingOp {
 public:
  NcclOp(std::shared_ptr<NcclCommunicator::Impl> impl,
         std::shared_ptr<NcclCommunicator::Impl::Op> op)
      : impl_(std::move(impl)), op_(std::move(op)) {}
  ~NcclOp() override { impl_->Drop(op_); }

  absl::Status Wait() override { return impl_->Wait(*op_, impl_->timeout); }
  absl::Status WaitFor(absl::Duration timeout) override {
    return impl_->Wait(*op_, timeout);
  }

 private:
  // Declared first, destroyed last: the op's group refers to the Impl.
  std::shared_ptr<NcclCommunicator::Impl> impl_;
  std::shared_ptr<NcclCommunicator::Impl::Op> op_;
};

}  // namespace

absl::StatusOr<std::string> NcclCommunicator::NewUniqueId() {
  ncclUniqueId id;
  const kc::NcclStatus s = kc::NcclComm::NewUniqueId(&id);
  if (!s.ok()) return ToStatus(s);
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    const std::string& unique_id, const NcclOptions& options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is outside a group of ", options.size));
  }
  ncclUniqueId id;
  if (unique_id.size() != sizeof(id)) {
    return absl::InvalidArgumentError(absl::StrCat("an NCCL unique id has ",
                                                   sizeof(id), " bytes, not ",
                                                   unique_id.size()));
  }
  std::memcpy(&id, unique_id.data(), sizeof(id));
  int device = options.device;
  if (device < 0) {
    const cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) {
      return absl::FailedPreconditionError(
          absl::StrCat("rank ", options.rank, " of ", options.size,
                       " has no CUDA device: ", cudaGetErrorString(e)));
    }
  }
  const absl::Duration connect = options.connect_timeout > absl::ZeroDuration()
                                     ? options.connect_timeout
                                     : options.timeout;
  std::unique_ptr<kc::NcclComm> comm;
  const kc::NcclStatus s = kc::NcclComm::Create(
      id, options.rank, options.size, device, DeadlineAfter(connect), &comm);
  if (!s.ok()) return ToStatus(s);
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(std::make_shared<Impl>(std::move(comm), options)));
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Connect(
    RendezvousStore& store, const NcclOptions& options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is outside a group of ", options.size));
  }
  const std::string who =
      absl::StrCat("rank ", options.rank, " of ", options.size);
  const absl::Duration connect = options.connect_timeout > absl::ZeroDuration()
                                     ? options.connect_timeout
                                     : options.timeout;
  // Presence keys are the ranks' numbers, which the store's errors report as
  // "rank N".
  absl::Status status = store.Set(absl::StrCat(options.rank), "here");
  if (!status.ok()) {
    return absl::Status(
        status.code(),
        absl::StrCat(who, " could not publish itself: ", status.message()));
  }
  std::string id;
  if (options.rank == 0) {
    absl::StatusOr<std::string> made = NewUniqueId();
    if (!made.ok()) return made.status();
    id = *std::move(made);
    status = store.Set("nccl_id", id);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(who, " could not publish the NCCL id: ",
                                       status.message()));
    }
  }
  std::vector<std::string> ranks;
  for (int r = 0; r < options.size; ++r) ranks.push_back(absl::StrCat(r));
  absl::StatusOr<std::vector<std::string>> present = store.Get(ranks, connect);
  if (!present.ok()) {
    return absl::Status(present.status().code(),
                        absl::StrCat(who, " could not form its NCCL group: ",
                                     present.status().message()));
  }
  if (options.rank != 0) {
    absl::StatusOr<std::vector<std::string>> got =
        store.Get({"nccl_id"}, connect);
    if (!got.ok()) {
      return absl::Status(got.status().code(),
                          absl::StrCat(who, " found no NCCL id from rank 0: ",
                                       got.status().message()));
    }
    id = (*got)[0];
  }
  return Create(id, options);
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::size() const { return impl_->size; }

absl::StatusOr<std::unique_ptr<Communicator::PendingOp>>
NcclCommunicator::Isend(const void* data, size_t bytes, int peer,
                        uint64_t tag) {
  // A send only reads `user`.
  auto op = std::make_shared<Impl::Op>();
  op->is_send = true;
  op->user = const_cast<void*>(data);
  op->bytes = bytes;
  op->peer = peer;
  op->tag = tag;
  return Impl::Post(impl_, std::move(op));
}

absl::StatusOr<std::unique_ptr<Communicator::PendingOp>>
NcclCommunicator::Irecv(void* data, size_t bytes, int peer, uint64_t tag) {
  auto op = std::make_shared<Impl::Op>();
  op->user = data;
  op->bytes = bytes;
  op->peer = peer;
  op->tag = tag;
  return Impl::Post(impl_, std::move(op));
}

absl::StatusOr<std::unique_ptr<Communicator::PendingOp>>
NcclCommunicator::Impl::Post(const std::shared_ptr<Impl>& impl,
                             std::shared_ptr<Op> op) {
  if (op->peer < 0 || op->peer >= impl->size) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot ", op->is_send ? "send to" : "receive from",
                     " rank ", op->peer, " of ", impl->size));
  }
  if (op->user == nullptr && op->bytes > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op->Describe(), ": null buffer"));
  }
  absl::Status status = impl->Usable();
  if (!status.ok()) return status;
  if (op->bytes > 0) {
    int device = -1;
    op->on_device = DevicePointer(op->user, &device);
    if (op->on_device && device >= 0 && device != impl->device) {
      return absl::InvalidArgumentError(
          absl::StrCat(op->Describe(), ": the buffer is memory of CUDA device ",
                       device, "; this rank uses device ", impl->device));
    }
  }
  impl->pending.push_back(op);
  return std::unique_ptr<PendingOp>(new NcclOp(impl, std::move(op)));
}

absl::Status NcclCommunicator::Gather(const void* data, size_t bytes, void* out,
                                      int root, uint64_t tag) {
  if (rank() != root) return Send(data, bytes, root, tag);
  absl::Status status = impl_->Usable();
  if (!status.ok()) return status;
  auto* base = static_cast<char*>(out);
  if (bytes > 0) {
    char* mine = base + static_cast<size_t>(root) * bytes;
    int device = -1;
    if (!DevicePointer(data, &device) && !DevicePointer(mine, &device)) {
      std::memcpy(mine, data, bytes);
    } else {
      const cudaError_t e = cudaMemcpy(mine, data, bytes, cudaMemcpyDefault);
      if (e != cudaSuccess) return CudaError("gather", e);
    }
  }
  std::vector<std::unique_ptr<PendingOp>> ops;
  for (int peer = 0; peer < size(); ++peer) {
    if (peer == root) continue;
    absl::StatusOr<std::unique_ptr<PendingOp>> op =
        Irecv(base + static_cast<size_t>(peer) * bytes, bytes, peer, tag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
  }
  for (auto& op : ops) {
    status = op->Wait();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace longctx
