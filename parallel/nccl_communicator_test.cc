// Tests of NcclCommunicator (built with --config=cuda). Those that need GPUs
// skip, saying so, on machines with too few; the group-formation failure needs
// none (NCCL's unique id is made without a GPU).
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/rendezvous/testing/in_process_rendezvous.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

int CudaDevices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

#define REQUIRE_GPUS(n)                                                     \
  if (CudaDevices() < (n)) {                                                \
    GTEST_SKIP() << "needs " << (n) << " CUDA device(s); this machine has " \
                 << CudaDevices();                                          \
  }

// DeviceBuffer owns n bytes of device memory on the current device.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&ptr_, n == 0 ? 1 : n), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  void* get() const { return ptr_; }
  void Put(const std::vector<uint8_t>& v) {
    ASSERT_EQ(cudaMemcpy(ptr_, v.data(), v.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<uint8_t> Get() const {
    std::vector<uint8_t> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr_, n_, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return v;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_;
};

std::vector<uint8_t> Pattern(size_t n, int from, int to, int message) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = static_cast<uint8_t>(i * 7 + from * 31 + to * 5 + message * 3);
  }
  return v;
}

std::unique_ptr<NcclCommunicator> SoloRank(
    absl::Duration timeout = absl::Seconds(30)) {
  auto id = NcclCommunicator::NewUniqueId();
  EXPECT_TRUE(id.ok()) << id.status();
  if (!id.ok()) return nullptr;
  NcclOptions options;
  options.device = 0;
  options.timeout = timeout;
  auto comm = NcclCommunicator::Create(*id, options);
  EXPECT_TRUE(comm.ok()) << comm.status();
  return comm.ok() ? *std::move(comm) : nullptr;
}

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rendezvous_ = testing::InProcessRendezvous::Start();
    address_ = rendezvous_->address();
  }

  std::unique_ptr<testing::InProcessRendezvous> rendezvous_;
  std::string address_;
};

TEST_F(NcclCommunicatorTest, AnIncompleteGroupFailsNamingTheMissingRanks) {
  const int size = 3;
  std::vector<absl::Status> results(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {  // Rank 2 never comes.
    threads.emplace_back([&, rank] {
      RendezvousStore store(address_, "group-3/nccl/1", absl::Seconds(2));
      NcclOptions options;
      options.rank = rank;
      options.size = size;
      options.timeout = absl::Seconds(2);
      results[rank] = NcclCommunicator::Connect(store, options).status();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& status : results) {
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_THAT(status.message(), HasSubstr("rank 2"));
    EXPECT_THAT(status.message(), HasSubstr("missing"));
  }
}

TEST_F(NcclCommunicatorTest, OneRankFormsThroughTheStoreAndRunsCollectives) {
  REQUIRE_GPUS(1);
  RendezvousStore store(address_, "group-1/nccl/1", absl::Seconds(20));
  NcclOptions options;
  options.device = 0;
  auto comm = NcclCommunicator::Connect(store, options);
  ASSERT_TRUE(comm.ok()) << comm.status();
  // Host buffers.
  std::vector<float> data(1001, 3.5f);
  ASSERT_TRUE((*comm)->Broadcast(data.data(), data.size() * 4, 0, 1).ok());
  EXPECT_EQ(data[1000], 3.5f);
  std::vector<float> all(1001, 0.f);
  ASSERT_TRUE(
      (*comm)->Gather(data.data(), data.size() * 4, all.data(), 0, 2).ok());
  EXPECT_EQ(all, data);
  ASSERT_TRUE((*comm)->Barrier(3).ok());
  // Device buffers.
  DeviceBuffer src(4000), dst(4000);
  src.Put(Pattern(4000, 0, 0, 1));
  ASSERT_TRUE((*comm)->Broadcast(src.get(), 4000, 0, 4).ok());
  ASSERT_TRUE((*comm)->Gather(src.get(), 4000, dst.get(), 0, 5).ok());
  EXPECT_EQ(dst.Get(), Pattern(4000, 0, 0, 1));
}

TEST_F(NcclCommunicatorTest, SendsToSelfFromHostAndDeviceBuffers) {
  REQUIRE_GPUS(1);
  auto comm = SoloRank();
  ASSERT_NE(comm, nullptr);
  for (size_t n : {size_t{1}, size_t{1000}, (size_t{3} << 20) + 7}) {
    const std::vector<uint8_t> want = Pattern(n, 0, 0, 0);
    DeviceBuffer dsrc(n), ddst(n);
    dsrc.Put(want);
    // host -> host, device -> device, host -> device, device -> host.
    std::vector<uint8_t> host_dst(n), host_dst2(n);
    const void* sources[] = {want.data(), dsrc.get(), want.data(), dsrc.get()};
    void* targets[] = {host_dst.data(), ddst.get(), ddst.get(),
                       host_dst2.data()};
    for (int k = 0; k < 4; ++k) {
      auto send = comm->Isend(sources[k], n, 0, /*tag=*/n + k);
      auto recv = comm->Irecv(targets[k], n, 0, /*tag=*/n + k);
      ASSERT_TRUE(send.ok() && recv.ok());
      ASSERT_TRUE((*recv)->Wait().ok()) << k;
      ASSERT_TRUE((*send)->Wait().ok()) << k;
    }
    EXPECT_EQ(host_dst, want);
    EXPECT_EQ(ddst.Get(), want);
    EXPECT_EQ(host_dst2, want);
  }
}

TEST_F(NcclCommunicatorTest, ADestroyedUnstartedOpIsCancelled) {
  REQUIRE_GPUS(1);
  auto comm = SoloRank();
  ASSERT_NE(comm, nullptr);
  int lost = 7;
  { auto send = comm->Isend(&lost, sizeof(lost), 0, 1); }  // Never waited.
  int value = 42, got = 0;
  auto send = comm->Isend(&value, sizeof(value), 0, 2);
  auto recv = comm->Irecv(&got, sizeof(got), 0, 2);
  ASSERT_TRUE((*recv)->Wait().ok());
  ASSERT_TRUE((*send)->Wait().ok());
  EXPECT_EQ(got, 42);
}

TEST_F(NcclCommunicatorTest, AMismatchedTagFailsAndBreaksTheCommunicator) {
  REQUIRE_GPUS(1);
  auto comm = SoloRank();
  ASSERT_NE(comm, nullptr);
  int value = 1, got = 0;
  auto send = comm->Isend(&value, sizeof(value), 0, /*tag=*/1);
  auto recv = comm->Irecv(&got, sizeof(got), 0, /*tag=*/2);
  const absl::Status status = (*recv)->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_THAT(status.message(), HasSubstr("tag 1"));
  auto after = comm->Isend(&value, sizeof(value), 0, 3);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(NcclCommunicatorTest, AReceiveNobodySendsEndsByTheTimeout) {
  REQUIRE_GPUS(1);
  auto comm = SoloRank(absl::Seconds(2));
  ASSERT_NE(comm, nullptr);
  int got = 0;
  auto recv = comm->Irecv(&got, sizeof(got), 0, 1);
  ASSERT_TRUE(recv.ok());
  const absl::Time start = absl::Now();
  const absl::Status status = (*recv)->Wait();
  EXPECT_FALSE(status.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  EXPECT_EQ(comm->Barrier(2).code(), absl::StatusCode::kUnavailable);
}

// One rank per GPU, one thread per rank, as many as the machine has (2..4).
TEST_F(NcclCommunicatorTest, RanksOnSeveralGpusExchangeAsRingAttentionDoes) {
  REQUIRE_GPUS(2);
  const int size = std::min(CudaDevices(), 4);
  auto id = NcclCommunicator::NewUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      NcclOptions options;
      options.rank = rank;
      options.size = size;
      options.device = rank;
      options.timeout = absl::Seconds(60);
      auto created = NcclCommunicator::Create(*id, options);
      ASSERT_TRUE(created.ok()) << created.status();
      Communicator& comm = **created;
      const int next = (rank + 1) % size;
      const int prev = (rank + size - 1) % size;
      // Ring hops (pass-KV prefill): send to next, receive from previous.
      for (size_t n : {size_t{1}, size_t{1000}, (size_t{3} << 20) + 7}) {
        const std::vector<uint8_t> mine = Pattern(n, rank, next, 0);
        std::vector<uint8_t> theirs(n);
        auto send = comm.Isend(mine.data(), n, next, n);
        auto recv = comm.Irecv(theirs.data(), n, prev, n);
        ASSERT_TRUE(send.ok() && recv.ok());
        ASSERT_TRUE((*send)->Wait().ok());
        ASSERT_TRUE((*recv)->Wait().ok());
        ASSERT_EQ(theirs, Pattern(n, prev, rank, 0));
      }
      // Pass-Q decode: queries to everyone, then partials back.
      std::vector<std::unique_ptr<Communicator::PendingOp>> ops;
      std::vector<std::vector<uint8_t>> q_in(size), part_in(size),
          part_out(size);
      const std::vector<uint8_t> q_out = Pattern(333 + rank, rank, 9, 1);
      for (int j = 0; j < size; ++j) {
        if (j == rank) continue;
        q_in[j].resize(333 + j);
        ops.push_back(*comm.Irecv(q_in[j].data(), q_in[j].size(), j, 10));
        ops.push_back(*comm.Isend(q_out.data(), q_out.size(), j, 10));
      }
      for (auto& op : ops) ASSERT_TRUE(op->Wait().ok());
      ops.clear();
      for (int j = 0; j < size; ++j) {
        if (j == rank) continue;
        ASSERT_EQ(q_in[j], Pattern(333 + j, j, 9, 1));
        part_in[j].resize(50 + rank);
        ops.push_back(*comm.Irecv(part_in[j].data(), part_in[j].size(), j, 11));
      }
      for (int j = 0; j < size; ++j) {
        if (j == rank) continue;
        part_out[j] = Pattern(50 + j, rank, j, 2);
        ops.push_back(
            *comm.Isend(part_out[j].data(), part_out[j].size(), j, 11));
      }
      for (auto& op : ops) ASSERT_TRUE(op->Wait().ok());
      for (int j = 0; j < size; ++j) {
        if (j == rank) continue;
        ASSERT_EQ(part_in[j], Pattern(50 + rank, j, rank, 2));
      }
      // Collectives from Communicator, over host memory.
      std::vector<float> data(1001, rank == size - 1 ? 2.5f : 0.f);
      ASSERT_TRUE(
          comm.Broadcast(data.data(), data.size() * 4, size - 1, 20).ok());
      EXPECT_EQ(data[1000], 2.5f);
      int mine = rank * 10;
      std::vector<int> all(size, -1);
      ASSERT_TRUE(comm.Gather(&mine, sizeof(mine), all.data(), 0, 21).ok());
      if (rank == 0) {
        for (int r = 0; r < size; ++r) EXPECT_EQ(all[r], r * 10);
      }
      ASSERT_TRUE(comm.Barrier(22).ok());
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace
}  // namespace longctx
