// nccl_selftest: checks the NCCL communicator core (nccl_comm.h) with the ranks
// this machine's GPUs allow. NCCL refuses two ranks on one GPU, so with one GPU
// the group has one rank, which sends to and receives from itself; with G >= 2
// GPUs it also runs a group of min(G, 8) ranks, one thread and one GPU each
// (ring exchange, all-to-all, broadcast, gather, barrier), and an all-reduce
// over communicators made by ncclCommInitAll.
//
// Prints one line per check and "N passed, N failed"; exits non-zero on any
// failure or when no GPU is present. Depends on CUDA, NCCL and the C++
// standard library only (see run_gpu_selftests.sh).
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "parallel/nccl_comm.h"

namespace {

using longctx::kernels::cuda::NcclComm;
using longctx::kernels::cuda::NcclP2p;
using longctx::kernels::cuda::NcclStatus;
using Clock = std::chrono::steady_clock;

int g_passed = 0;
int g_failed = 0;

void Report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(),
              detail.c_str());
  std::fflush(stdout);
  (ok ? g_passed : g_failed)++;
}

Clock::time_point Deadline(int seconds) {
  return Clock::now() + std::chrono::seconds(seconds);
}

// DeviceBytes owns device memory on the device current when it was made.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t n) : n_(n) {
    if (cudaMalloc(&ptr_, std::max<size_t>(n, 1)) != cudaSuccess)
      ptr_ = nullptr;
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  bool ok() const { return ptr_ != nullptr; }
  char* get() const { return static_cast<char*>(ptr_); }
  bool Put(const std::vector<uint8_t>& v) const {
    return ptr_ != nullptr && v.size() <= n_ &&
           cudaMemcpy(ptr_, v.data(), v.size(), cudaMemcpyHostToDevice) ==
               cudaSuccess;
  }
  std::vector<uint8_t> Get(size_t n) const {
    std::vector<uint8_t> v(n, 0xee);
    if (ptr_ == nullptr || cudaMemcpy(v.data(), ptr_, std::min(n, n_),
                                      cudaMemcpyDeviceToHost) != cudaSuccess) {
      v.clear();
    }
    return v;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_;
};

// Pattern returns n bytes that depend on the sender, receiver and message.
std::vector<uint8_t> Pattern(size_t n, int from, int to, int message) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = static_cast<uint8_t>(i * 131 + from * 31 + to * 7 + message * 3 + 1);
  }
  return v;
}

std::string Describe(const NcclStatus& s) { return s.ok() ? "ok" : s.message; }

// ---------------------------------------------------------------------------
// One rank on one GPU.

void CheckSingleRank(int device) {
  ncclUniqueId id;
  NcclStatus s = NcclComm::NewUniqueId(&id);
  if (!s.ok()) {
    Report("nccl 1 rank: unique id", false, s.message);
    return;
  }
  std::unique_ptr<NcclComm> comm;
  s = NcclComm::Create(id, 0, 1, device, Deadline(60), &comm);
  Report("nccl 1 rank: create", s.ok(), Describe(s));
  if (!s.ok()) return;

  // Send to self and receive, grouped, for awkward sizes.
  for (size_t n : {size_t{1}, size_t{1000}, (size_t{3} << 20) + 7}) {
    DeviceBytes src(n), dst(n);
    const std::vector<uint8_t> want = Pattern(n, 0, 0, 0);
    bool ok = src.ok() && dst.ok() && src.Put(want);
    s = comm->Enqueue({{NcclP2p::Kind::kSend, src.get(), n, 0},
                       {NcclP2p::Kind::kRecv, dst.get(), n, 0}},
                      comm->stream(), Deadline(60));
    if (s.ok())
      s = comm->Synchronize(comm->stream(), Deadline(60), "self send");
    ok = ok && s.ok() && dst.Get(n) == want;
    Report("nccl 1 rank: send to self " + std::to_string(n) + " bytes", ok,
           Describe(s));
  }
  {
    // Two messages to self in one group arrive in the order they were sent.
    DeviceBytes a(100), b(100), x(100), y(100);
    a.Put(Pattern(100, 0, 0, 1));
    b.Put(Pattern(100, 0, 0, 2));
    s = comm->Enqueue({{NcclP2p::Kind::kSend, a.get(), 100, 0},
                       {NcclP2p::Kind::kSend, b.get(), 100, 0},
                       {NcclP2p::Kind::kRecv, x.get(), 100, 0},
                       {NcclP2p::Kind::kRecv, y.get(), 100, 0}},
                      comm->stream(), Deadline(60));
    if (s.ok()) s = comm->Synchronize(comm->stream(), Deadline(60), "in order");
    Report("nccl 1 rank: messages to self keep their order",
           s.ok() && x.Get(100) == Pattern(100, 0, 0, 1) &&
               y.Get(100) == Pattern(100, 0, 0, 2),
           Describe(s));
  }
  {
    DeviceBytes data(777), out(777);
    const std::vector<uint8_t> want = Pattern(777, 0, 0, 3);
    data.Put(want);
    s = comm->Broadcast(data.get(), 777, 0, comm->stream(), Deadline(60));
    Report("nccl 1 rank: broadcast", s.ok() && data.Get(777) == want,
           Describe(s));
    s = comm->Gather(data.get(), 777, out.get(), 0, comm->stream(),
                     Deadline(60));
    Report("nccl 1 rank: gather", s.ok() && out.Get(777) == want, Describe(s));
    s = comm->Barrier(comm->stream(), Deadline(60));
    Report("nccl 1 rank: barrier", s.ok(), Describe(s));
  }
  {
    // A receive nobody sends: the wait must end at its deadline (or NCCL
    // refuses the lone receive), the communicator is then aborted, and later
    // calls say so.
    DeviceBytes dst(64);
    const Clock::time_point start = Clock::now();
    s = comm->Enqueue({{NcclP2p::Kind::kRecv, dst.get(), 64, 0}},
                      comm->stream(), Deadline(3));
    if (s.ok())
      s = comm->Synchronize(comm->stream(), Deadline(3), "lone receive");
    const double waited =
        std::chrono::duration<double>(Clock::now() - start).count();
    const NcclStatus after = comm->Barrier(comm->stream(), Deadline(5));
    Report("nccl 1 rank: unmatched receive fails and aborts",
           !s.ok() && comm->aborted() &&
               after.code == NcclStatus::Code::kUnavailable && waited < 30,
           "first: " + Describe(s) + "; then: " + Describe(after) + " (" +
               std::to_string(waited) + " s)");
  }
  comm.reset();
  // A fresh group forms after an abort.
  s = NcclComm::NewUniqueId(&id);
  if (s.ok()) s = NcclComm::Create(id, 0, 1, device, Deadline(60), &comm);
  if (s.ok()) {
    DeviceBytes src(4096), dst(4096);
    src.Put(Pattern(4096, 0, 0, 9));
    s = comm->Enqueue({{NcclP2p::Kind::kSend, src.get(), 4096, 0},
                       {NcclP2p::Kind::kRecv, dst.get(), 4096, 0}},
                      comm->stream(), Deadline(60));
    if (s.ok()) s = comm->Synchronize(comm->stream(), Deadline(60), "again");
    if (s.ok() && dst.Get(4096) != Pattern(4096, 0, 0, 9)) {
      s = NcclStatus::Error(NcclStatus::Code::kInternal, "wrong bytes");
    }
  }
  Report("nccl 1 rank: a new group works after an abort", s.ok(), Describe(s));
}

// ---------------------------------------------------------------------------
// One rank per GPU, one thread per rank.

// Runs on rank `rank`'s thread; returns the failures it saw (empty: all good).
std::vector<std::string> RunRank(const ncclUniqueId& id, int rank, int size) {
  std::vector<std::string> failures;
  auto fail = [&](const std::string& what, const NcclStatus& s) {
    failures.push_back("rank " + std::to_string(rank) + ": " + what + ": " +
                       Describe(s));
  };
  std::unique_ptr<NcclComm> comm;
  NcclStatus s = NcclComm::Create(id, rank, size, rank, Deadline(120), &comm);
  if (!s.ok()) {
    fail("create", s);
    return failures;
  }
  cudaStream_t stream = comm->stream();
  const int next = (rank + 1) % size;
  const int prev = (rank + size - 1) % size;
  // Ring: send to the next rank while receiving from the previous one.
  for (size_t n : {size_t{1}, size_t{1000}, (size_t{3} << 20) + 7}) {
    DeviceBytes mine(n), theirs(n);
    mine.Put(Pattern(n, rank, next, 0));
    s = comm->Enqueue({{NcclP2p::Kind::kSend, mine.get(), n, next},
                       {NcclP2p::Kind::kRecv, theirs.get(), n, prev}},
                      stream, Deadline(60));
    if (s.ok()) s = comm->Synchronize(stream, Deadline(60), "ring");
    if (!s.ok() || theirs.Get(n) != Pattern(n, prev, rank, 0)) {
      fail("ring of " + std::to_string(n) + " bytes", s);
      return failures;
    }
  }
  // All-to-all in one group, each message its own size (as pass-Q decode's
  // query exchange).
  {
    std::vector<std::unique_ptr<DeviceBytes>> out(size), in(size);
    std::vector<NcclP2p> ops;
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      const size_t send_n = 100 + 37 * rank + peer;
      const size_t recv_n = 100 + 37 * peer + rank;
      out[peer] = std::make_unique<DeviceBytes>(send_n);
      in[peer] = std::make_unique<DeviceBytes>(recv_n);
      out[peer]->Put(Pattern(send_n, rank, peer, 1));
      ops.push_back({NcclP2p::Kind::kRecv, in[peer]->get(), recv_n, peer});
      ops.push_back({NcclP2p::Kind::kSend, out[peer]->get(), send_n, peer});
    }
    s = comm->Enqueue(ops, stream, Deadline(60));
    if (s.ok()) s = comm->Synchronize(stream, Deadline(60), "all-to-all");
    bool ok = s.ok();
    for (int peer = 0; ok && peer < size; ++peer) {
      if (peer == rank) continue;
      const size_t recv_n = 100 + 37 * peer + rank;
      ok = in[peer]->Get(recv_n) == Pattern(recv_n, peer, rank, 1);
    }
    if (!ok) {
      fail("all-to-all", s);
      return failures;
    }
  }
  // Broadcast from the last rank, gather to rank 0, barrier.
  {
    const size_t n = 4099;
    DeviceBytes data(n), all(n * size);
    data.Put(rank == size - 1 ? Pattern(n, size - 1, 0, 2)
                              : std::vector<uint8_t>(n, 0));
    s = comm->Broadcast(data.get(), n, size - 1, stream, Deadline(60));
    if (!s.ok() || data.Get(n) != Pattern(n, size - 1, 0, 2)) {
      fail("broadcast", s);
      return failures;
    }
    data.Put(Pattern(n, rank, 0, 3));
    s = comm->Gather(data.get(), n, all.get(), 0, stream, Deadline(60));
    bool ok = s.ok();
    if (ok && rank == 0) {
      const std::vector<uint8_t> got = all.Get(n * size);
      ok = got.size() == n * size;
      for (int r = 0; ok && r < size; ++r) {
        ok = std::equal(got.begin() + r * n, got.begin() + (r + 1) * n,
                        Pattern(n, r, 0, 3).begin());
      }
    }
    if (!ok) {
      fail("gather", s);
      return failures;
    }
    s = comm->Barrier(stream, Deadline(60));
    if (!s.ok()) fail("barrier", s);
  }
  return failures;
}

void CheckGroup(int size) {
  const std::string name =
      "nccl " + std::to_string(size) + " ranks (one per GPU, threads)";
  ncclUniqueId id;
  NcclStatus s = NcclComm::NewUniqueId(&id);
  if (!s.ok()) {
    Report(name, false, s.message);
    return;
  }
  std::vector<std::vector<std::string>> failures(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back(
        [&, rank] { failures[rank] = RunRank(id, rank, size); });
  }
  for (std::thread& t : threads) t.join();
  std::string detail =
      "ring (1 B, 1000 B, 3 MiB + 7 B), all-to-all, "
      "broadcast, gather, barrier";
  bool ok = true;
  for (const auto& f : failures) {
    for (const std::string& line : f) {
      ok = false;
      detail = line;
    }
  }
  Report(name, ok, detail);
}

// An all-reduce over communicators of every GPU made by ncclCommInitAll, with
// rank-dependent values checked exactly (small integers).
void CheckInitAll(int devices) {
  std::vector<ncclComm_t> comms(devices);
  std::vector<int> ids(devices);
  for (int i = 0; i < devices; ++i) ids[i] = i;
  ncclResult_t r = ncclCommInitAll(comms.data(), devices, ids.data());
  if (r != ncclSuccess) {
    Report("nccl all-reduce (ncclCommInitAll)", false, ncclGetErrorString(r));
    return;
  }
  const int count = 1000;
  std::vector<float*> buffers(devices, nullptr);
  bool ok = true;
  for (int i = 0; i < devices; ++i) {
    cudaSetDevice(i);
    ok = ok && cudaMalloc(&buffers[i], count * sizeof(float)) == cudaSuccess;
    std::vector<float> init(count, float(i + 1));
    ok = ok && cudaMemcpy(buffers[i], init.data(), count * sizeof(float),
                          cudaMemcpyHostToDevice) == cudaSuccess;
  }
  if (ok) {
    ncclGroupStart();
    for (int i = 0; i < devices; ++i) {
      ncclAllReduce(buffers[i], buffers[i], count, ncclFloat, ncclSum, comms[i],
                    0);
    }
    r = ncclGroupEnd();
    ok = r == ncclSuccess;
  }
  const float expected = float(devices) * (devices + 1) / 2;
  for (int i = 0; i < devices; ++i) {
    cudaSetDevice(i);
    if (ok) ok = cudaDeviceSynchronize() == cudaSuccess;
    if (ok) {
      std::vector<float> out(count);
      ok = cudaMemcpy(out.data(), buffers[i], count * sizeof(float),
                      cudaMemcpyDeviceToHost) == cudaSuccess;
      for (float v : out) ok = ok && v == expected;
    }
    if (buffers[i] != nullptr) cudaFree(buffers[i]);
    ncclCommDestroy(comms[i]);
  }
  Report("nccl all-reduce (ncclCommInitAll)", ok,
         "over " + std::to_string(devices) + " GPU(s)");
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("no CUDA device (%s): nothing to check\n0 passed, 1 failed\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 1;
  }
  int version = 0;
  ncclGetVersion(&version);
  std::printf("NCCL %d (built with %d), %d GPU(s)\n", version,
              NCCL_VERSION_CODE, devices);
  CheckSingleRank(0);
  if (devices >= 2) {
    CheckGroup(std::min(devices, 8));
  } else {
    std::printf(
        "one GPU: the multi-rank group check needs two (NCCL allows "
        "one rank per GPU)\n");
  }
  CheckInitAll(devices);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
