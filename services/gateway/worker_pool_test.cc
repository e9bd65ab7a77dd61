#include "services/gateway/worker_pool.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"

namespace longctx {
namespace {

// A worker rank that answers GetStatus with whatever the test set.
class FakeWorker : public worker::v1::Worker::CallbackService {
 public:
  // Where the rank says it stands in its group.
  void Place(int rank, int group_size) {
    absl::MutexLock lock(&mu_);
    status_.set_rank(rank);
    status_.set_group_size(group_size);
  }
  void Set(bool ready, const std::string& fingerprint = "f00d") {
    absl::MutexLock lock(&mu_);
    status_.set_ready(ready);
    status_.set_model_fingerprint(fingerprint);
    status_.set_block_size(16);
  }
  grpc::ServerUnaryReactor* GetStatus(
      grpc::CallbackServerContext* context,
      const worker::v1::GetStatusRequest* /*request*/,
      worker::v1::WorkerStatus* response) override {
    {
      absl::MutexLock lock(&mu_);
      *response = status_;
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  absl::Mutex mu_;
  worker::v1::WorkerStatus status_ ABSL_GUARDED_BY(mu_);
};

class WorkerPoolTest : public ::testing::Test {
 protected:
  // Starts `n` fake ranks in groups of `group_size`, all ready.
  void StartWorkers(int n, int group_size = 1) {
    for (int i = 0; i < n; ++i) {
      auto worker = std::make_unique<FakeWorker>();
      worker->Place(i % group_size, group_size);
      worker->Set(true);
      GrpcServerOptions options;
      options.listen = {"127.0.0.1", 0};
      servers_.push_back(*GrpcServer::Start(options, {worker.get()}));
      addresses_.push_back({"127.0.0.1", servers_.back()->port()});
      workers_.push_back(std::move(worker));
    }
  }

  // A pool over the fake ranks that probes only when asked (ProbeOnce).
  std::unique_ptr<WorkerPool> Pool(int group_size, int slack = 4) {
    WorkerPoolOptions options;
    options.workers = addresses_;
    options.group_size = group_size;
    options.probe_interval = absl::Hours(1);
    options.affinity_slack = slack;
    auto pool = WorkerPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    (*pool)->ProbeOnce();
    return *std::move(pool);
  }

  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::vector<std::unique_ptr<GrpcServer>> servers_;
  std::vector<HostPort> addresses_;
};

TEST_F(WorkerPoolTest, RejectsNoWorkersAndRanksThatDoNotFillGroups) {
  WorkerPoolOptions options;
  EXPECT_TRUE(absl::IsInvalidArgument(WorkerPool::Create(options).status()));
  StartWorkers(3, 2);
  options.workers = addresses_;
  options.group_size = 2;
  EXPECT_TRUE(absl::IsInvalidArgument(WorkerPool::Create(options).status()));
}

TEST_F(WorkerPoolTest, TakesTheLeastLoadedGroupAndTiesInTurn) {
  StartWorkers(3);
  auto pool = Pool(1);
  EXPECT_EQ(pool->num_groups(), 3);
  EXPECT_TRUE(pool->AnyReady());
  EXPECT_EQ(pool->fingerprint(), "f00d");
  EXPECT_EQ(pool->block_size(), 16);
  // Three ties taken in turn, then the least loaded (after a release).
  std::vector<int> taken;
  for (int i = 0; i < 3; ++i) taken.push_back(*pool->Acquire());
  std::sort(taken.begin(), taken.end());
  EXPECT_EQ(taken, (std::vector<int>{0, 1, 2}));
  pool->Release(1);
  EXPECT_EQ(*pool->Acquire(), 1);
}

TEST_F(WorkerPoolTest, APreferredGroupIsTakenWhileItHasRoom) {
  StartWorkers(2);
  auto pool = Pool(1, /*slack=*/2);
  // Group 0 is taken while it has at most 2 more requests than group 1.
  EXPECT_EQ(*pool->Acquire(0), 0);  // 0 vs 0.
  EXPECT_EQ(*pool->Acquire(0), 0);  // 1 vs 0.
  EXPECT_EQ(*pool->Acquire(0), 0);  // 2 vs 0.
  EXPECT_EQ(*pool->Acquire(0), 1);  // 3 vs 0: no room.
  EXPECT_EQ(*pool->Acquire(0), 0);  // 3 vs 1.
  // A preferred group that is not ready is passed over.
  workers_[1]->Set(false);
  pool->ProbeOnce();
  EXPECT_EQ(*pool->Acquire(1), 0);
}

TEST_F(WorkerPoolTest, AGroupIsReadyOnlyWhenEveryRankIs) {
  StartWorkers(4, 2);
  auto pool = Pool(2);
  EXPECT_EQ(pool->num_groups(), 2);
  workers_[3]->Set(false);  // Rank 1 of group 1.
  pool->ProbeOnce();
  const std::vector<GroupState> states = pool->States();
  EXPECT_TRUE(states[0].ready);
  EXPECT_FALSE(states[1].ready);
  EXPECT_NE(states[1].problem.find("rank 1"), std::string::npos)
      << states[1].problem;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*pool->Acquire(), 0);
}

TEST_F(WorkerPoolTest, NoReadyGroupIsUnavailableNamingTheProblems) {
  StartWorkers(2);
  auto pool = Pool(1);
  bool last = true;
  int calls = 0;
  pool->OnReadinessChange([&](bool ready) {
    last = ready;
    ++calls;
  });
  EXPECT_EQ(calls, 1);
  workers_[0]->Set(false);
  servers_[1].reset();  // Rank of group 1 gone.
  pool->ProbeOnce();
  EXPECT_FALSE(pool->AnyReady());
  EXPECT_FALSE(last);
  EXPECT_EQ(calls, 2);
  absl::StatusOr<int> group = pool->Acquire();
  ASSERT_TRUE(absl::IsUnavailable(group.status())) << group.status();
  EXPECT_NE(group.status().message().find(addresses_[1].ToString()),
            std::string::npos)
      << group.status();
  pool->OnReadinessChange([](bool) {});
}

TEST_F(WorkerPoolTest, AGroupServingAnotherModelIsNotReady) {
  StartWorkers(2);
  auto pool = Pool(1);
  workers_[1]->Set(true, "beef");
  pool->ProbeOnce();
  const std::vector<GroupState> states = pool->States();
  EXPECT_TRUE(states[0].ready);
  EXPECT_FALSE(states[1].ready);
  EXPECT_NE(states[1].problem.find("different model"), std::string::npos)
      << states[1].problem;
}

}  // namespace
}  // namespace longctx
