#include "parallel/gloo_communicator.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/hash_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

// Runs `body(communicator)` on `size` ranks, each in its own thread, connected
// over loopback TCP through one in-process store.
template <typename Body>
void RunGroup(int size, Body body) {
  gloo::rendezvous::HashStore store;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      GlooOptions options;
      options.rank = rank;
      options.size = size;
      options.timeout = absl::Seconds(20);
      auto comm = GlooCommunicator::Connect(store, options);
      ASSERT_TRUE(comm.ok()) << comm.status();
      body(**comm);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(GlooCommunicatorTest, RingPassesBuffersOfAwkwardSizes) {
  for (int size : {2, 3, 4}) {
    RunGroup(size, [size](Communicator& comm) {
      // Each rank sends its buffer to the next and receives the previous one's,
      // with sends and receives in flight together, as the ring attention does.
      for (size_t n : {size_t{1}, size_t{1000}, size_t{3 << 20} + 7}) {
        std::vector<uint8_t> mine(n), theirs(n);
        for (size_t i = 0; i < n; ++i)
          mine[i] = static_cast<uint8_t>(i * 7 + comm.rank());
        const int next = (comm.rank() + 1) % size;
        const int prev = (comm.rank() + size - 1) % size;
        auto recv = comm.Irecv(theirs.data(), n, prev, /*tag=*/n);
        auto send = comm.Isend(mine.data(), n, next, /*tag=*/n);
        ASSERT_TRUE(recv.ok() && send.ok());
        ASSERT_TRUE((*send)->Wait().ok());
        ASSERT_TRUE((*recv)->Wait().ok());
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(theirs[i], static_cast<uint8_t>(i * 7 + prev)) << i;
        }
      }
    });
  }
}

TEST(GlooCommunicatorTest, TagsKeepMessagesApart) {
  RunGroup(2, [](Communicator& comm) {
    int a = 0, b = 0;
    if (comm.rank() == 0) {
      int one = 1, two = 2;
      ASSERT_TRUE(comm.Send(&two, sizeof(two), 1, /*tag=*/2).ok());
      ASSERT_TRUE(comm.Send(&one, sizeof(one), 1, /*tag=*/1).ok());
    } else {
      // Received in the opposite order of sending: tags, not order, match them.
      auto first = comm.Irecv(&a, sizeof(a), 0, 1);
      auto second = comm.Irecv(&b, sizeof(b), 0, 2);
      ASSERT_TRUE((*first)->Wait().ok());
      ASSERT_TRUE((*second)->Wait().ok());
      EXPECT_EQ(a, 1);
      EXPECT_EQ(b, 2);
    }
  });
}

TEST(GlooCommunicatorTest, BroadcastGatherAndBarrier) {
  RunGroup(3, [](Communicator& comm) {
    std::vector<float> data(1001, comm.rank() == 2 ? 3.5f : 0.f);
    ASSERT_TRUE(
        comm.Broadcast(data.data(), data.size() * 4, /*root=*/2, 10).ok());
    for (float v : data) ASSERT_EQ(v, 3.5f);

    int32_t mine = 100 + comm.rank();
    std::vector<int32_t> all(3, -1);
    ASSERT_TRUE(comm.Gather(&mine, 4, all.data(), /*root=*/1, 11).ok());
    if (comm.rank() == 1) {
      EXPECT_EQ(all, (std::vector<int32_t>{100, 101, 102}));
    }
    EXPECT_TRUE(comm.Barrier(12).ok());
  });
}

TEST(GlooCommunicatorTest, RejectsBadPeers) {
  RunGroup(2, [](Communicator& comm) {
    char c = 0;
    EXPECT_EQ(comm.Isend(&c, 1, comm.rank(), 0).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(comm.Irecv(&c, 1, 5, 0).status().code(),
              absl::StatusCode::kInvalidArgument);
    // Tags from kMaxTag up are the communicator's own.
    EXPECT_EQ(comm.Isend(&c, 1, 1 - comm.rank(), Communicator::kMaxTag)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(comm.Irecv(&c, 1, 1 - comm.rank(), ~uint64_t{0}).status().code(),
              absl::StatusCode::kInvalidArgument);
  });
}

TEST(GlooCommunicatorTest, AGroupThatCannotFormFailsWithinItsTimeout) {
  gloo::rendezvous::HashStore store;
  GlooOptions options;
  options.rank = 0;
  options.size = 2;  // Rank 1 never comes.
  options.timeout = absl::Seconds(1);
  absl::Time start = absl::Now();
  auto comm = GlooCommunicator::Connect(store, options);
  EXPECT_FALSE(comm.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

// A peer that dies in the middle of a transfer fails the transfer at once
// with UNAVAILABLE, not at the op's timeout. Rank 1 is a child process: it
// posts a receive of a large message, says it is ready and is then stopped
// (SIGSTOP), so rank 0's send fills the socket and waits to be written; then
// rank 1 is killed. (Gloo itself does not signal a send queued for writing, or
// a receive half read, when the connection fails; the communicator must.)
TEST(GlooCommunicatorTest, APeerThatDiesMidTransferFailsItAtOnce) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/gloo_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  constexpr size_t kBytes = size_t{64} << 20;
  constexpr uint64_t kReady = 1, kBig = 2;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    gloo::rendezvous::FileStore store(dir);
    GlooOptions options;
    options.rank = 1;
    options.size = 2;
    auto comm = GlooCommunicator::Connect(store, options);
    if (!comm.ok()) _exit(1);
    std::vector<char> big(kBytes);
    auto recv = (*comm)->Irecv(big.data(), big.size(), 0, kBig);
    char ready = 1;
    if (!recv.ok() || !(*comm)->Send(&ready, 1, 0, kReady).ok()) _exit(2);
    pause();
    _exit(0);
  }
  gloo::rendezvous::FileStore store(dir);
  GlooOptions options;
  options.rank = 0;
  options.size = 2;
  options.timeout = absl::Seconds(40);
  auto comm = GlooCommunicator::Connect(store, options);
  ASSERT_TRUE(comm.ok()) << comm.status();
  char ready = 0;
  ASSERT_TRUE((*comm)->Recv(&ready, 1, 1, kReady).ok());
  ASSERT_EQ(kill(child, SIGSTOP), 0);
  std::vector<char> big(kBytes, 7);
  auto send = (*comm)->Isend(big.data(), big.size(), 1, kBig);
  ASSERT_TRUE(send.ok()) << send.status();
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  const absl::Time start = absl::Now();
  absl::Status sent = (*send)->Wait();
  EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable) << sent;
  EXPECT_THAT(std::string(sent.message()), ::testing::HasSubstr("rank 1"));
  // Well before the op's own timeout (40 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  // Whatever is posted afterwards fails at once too.
  char c = 0;
  auto late = (*comm)->Isend(&c, 1, 1, kReady);
  EXPECT_TRUE(!late.ok() || !(*late)->Wait().ok());
}

}  // namespace
}  // namespace longctx
