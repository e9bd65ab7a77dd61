#include "parallel/rendezvous_store.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/gloo_communicator.h"
#include "services/rendezvous/testing/in_process_rendezvous.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

class RendezvousStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rendezvous_ = testing::InProcessRendezvous::Start();
    address_ = rendezvous_->address();
  }

  std::unique_ptr<testing::InProcessRendezvous> rendezvous_;
  std::string address_;
};

TEST_F(RendezvousStoreTest, GlooGroupFormsThroughTheRendezvousService) {
  const int size = 3;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      RendezvousStore store(address_, "group-7/gloo", absl::Seconds(20));
      GlooOptions options;
      options.rank = rank;
      options.size = size;
      auto comm = GlooCommunicator::Connect(store, options);
      ASSERT_TRUE(comm.ok()) << comm.status();
      int value = rank == 0 ? 42 : 0;
      ASSERT_TRUE((*comm)->Broadcast(&value, sizeof(value), 0, 1).ok());
      EXPECT_EQ(value, 42);
    });
  }
  for (auto& t : threads) t.join();
}

TEST_F(RendezvousStoreTest, AnIncompleteGroupFailsNamingTheMissingRanks) {
  const int size = 3;
  std::vector<absl::Status> results(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {  // Rank 2 never comes.
    threads.emplace_back([&, rank] {
      RendezvousStore store(address_, "group-8/gloo", absl::Seconds(2));
      GlooOptions options;
      options.rank = rank;
      options.size = size;
      options.timeout = absl::Seconds(2);
      results[rank] = GlooCommunicator::Connect(store, options).status();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& status : results) {
    EXPECT_FALSE(status.ok());
    EXPECT_THAT(status.message(), HasSubstr("rank 2"));
  }
}

TEST_F(RendezvousStoreTest, StatusApiScopesKeys) {
  RendezvousStore a(address_, "g/nccl", absl::Seconds(5));
  RendezvousStore b(address_, "h/nccl", absl::Seconds(5));
  ASSERT_TRUE(a.Set("id", "abc").ok());
  auto got = a.Get({"id"}, absl::ZeroDuration());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0], "abc");
  EXPECT_EQ(b.Get({"id"}, absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace longctx
