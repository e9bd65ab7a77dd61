#include "parallel/worker_group.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/random_llama.h"
#include "services/rendezvous/testing/in_process_rendezvous.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

constexpr int kBlockSize = 16;
constexpr int kBlocksPerRank = 48;

// One rank: its own copy of the model, its blocks and its membership, with
// the readiness its group reports.
class Rank {
 public:
  Rank(const testing::RandomLlama& random, const WorkerGroupOptions& options) {
    model_ = *LlamaModel::Create(random.shape, random.weights, {});
    const KvLayout layout = model_->KvLayoutFor(kBlockSize, KvDtype::kF16);
    pool_ = *KvBlockPool::Create(layout, layout.BlockBytes() * kBlocksPerRank);
    group_ = std::make_unique<WorkerGroup>(
        options, model_.get(), pool_.get(), /*io=*/nullptr,
        [this](bool ready, const std::string& why) {
          absl::MutexLock lock(&mu_);
          ready_ = ready;
          why_ = why;
        });
  }

  // Waits until the group reports `ready`; false on timeout.
  bool WaitReady(bool ready, absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ready_ == ready;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  // Waits until the group reports a problem; false on timeout.
  bool WaitProblem(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reported = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !ready_ && !why_.empty();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reported), timeout);
  }

  std::string why() {
    absl::MutexLock lock(&mu_);
    return why_;
  }

  WorkerGroup& group() { return *group_; }

 private:
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvBlockPool> pool_;
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  std::string why_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<WorkerGroup> group_;  // Last: stopped first.
};

struct Generated {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> logprobs;
  absl::Status status;
};

// Greedy generation of `max_new` tokens with their log-probabilities.
Generated Generate(ForwardModel* model, KvBlockPool* pool,
                   std::vector<int32_t> prompt, int max_new) {
  Engine engine(model, pool, EngineOptions());
  GenerateParams params;
  params.prompt = std::move(prompt);
  params.temperature = 0;
  params.max_new_tokens = max_new;
  params.logprobs = true;
  params.top_logprobs = 3;
  Generated out;
  absl::Notification done;
  absl::StatusOr<int64_t> id =
      engine.Submit(std::move(params), [&](TokenEvent event) {
        out.tokens.insert(out.tokens.end(), event.tokens.begin(),
                          event.tokens.end());
        for (TokenLogprob& l : event.logprobs) {
          out.logprobs.push_back(std::move(l));
        }
        if (event.finished) {
          out.status = event.status;
          done.Notify();
        }
      });
  if (!id.ok()) return {{}, {}, id.status()};
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(60))) {
    out.status = absl::DeadlineExceededError("no final event in 60 s");
  }
  return out;
}

class WorkerGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    random_ = testing::MakeRandomLlama(/*biases=*/false, /*tied=*/false, 33);
    rendezvous_ = testing::InProcessRendezvous::Start();
  }

  std::unique_ptr<Rank> StartRank(
      int rank, int size, absl::Duration form_timeout = absl::Seconds(5),
      absl::Duration heartbeat = absl::Milliseconds(50)) {
    WorkerGroupOptions options;
    options.group_id = "group-test";
    options.rank = rank;
    options.size = size;
    options.rendezvous_address = rendezvous_->address();
    options.form_timeout = form_timeout;
    options.op_timeout = absl::Seconds(10);
    options.heartbeat = heartbeat;
    return std::make_unique<Rank>(random_, options);
  }

  // The same prompt on one rank alone, without a group.
  Generated OneRank(const std::vector<int32_t>& prompt, int max_new) {
    std::unique_ptr<LlamaModel> model =
        *LlamaModel::Create(random_.shape, random_.weights, {});
    const KvLayout layout = model->KvLayoutFor(kBlockSize, KvDtype::kF16);
    std::unique_ptr<KvBlockPool> pool =
        *KvBlockPool::Create(layout, layout.BlockBytes() * kBlocksPerRank);
    return Generate(model.get(), pool.get(), prompt, max_new);
  }

  testing::RandomLlama random_;
  std::unique_ptr<testing::InProcessRendezvous> rendezvous_;
};

// P ranks = one rank: the same greedy tokens, log-probabilities within the
// ring's 1e-4 (its partial softmaxes add up in another order).
void ExpectSame(const Generated& group, const Generated& one) {
  ASSERT_TRUE(group.status.ok()) << group.status;
  ASSERT_TRUE(one.status.ok()) << one.status;
  EXPECT_EQ(group.tokens, one.tokens);
  ASSERT_EQ(group.logprobs.size(), one.logprobs.size());
  for (size_t i = 0; i < one.logprobs.size(); ++i) {
    EXPECT_NEAR(group.logprobs[i].logprob, one.logprobs[i].logprob, 1e-4)
        << "token " << i;
    ASSERT_EQ(group.logprobs[i].top.size(), one.logprobs[i].top.size());
    for (size_t k = 0; k < one.logprobs[i].top.size(); ++k) {
      EXPECT_EQ(group.logprobs[i].top[k].token, one.logprobs[i].top[k].token);
      EXPECT_NEAR(group.logprobs[i].top[k].logprob,
                  one.logprobs[i].top[k].logprob, 1e-4);
    }
  }
}

TEST_F(WorkerGroupTest, ThreeRanksGenerateWhatOneRankGenerates) {
  std::vector<std::unique_ptr<Rank>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(StartRank(r, 3));
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(ranks[r]->WaitReady(true))
        << "rank " << r << ": " << ranks[r]->why();
  }
  // 101 tokens: 6 full blocks and a partial one, spread over the ranks.
  const std::vector<int32_t> prompt =
      testing::RandomTokens(101, random_.shape.vocab_size, 5);
  WorkerGroup& leader = ranks[0]->group();
  ASSERT_NE(leader.forward_model(), nullptr);
  const Generated group =
      Generate(leader.forward_model(), leader.group_pool(), prompt, 12);
  ExpectSame(group, OneRank(prompt, 12));
  // Every rank took part: the leader sent the others its plans.
  EXPECT_GT(leader.stats().steps, 0);
  EXPECT_GT(ranks[1]->group().stats().steps, 0);
  EXPECT_GT(ranks[2]->group().stats().steps, 0);
}

TEST_F(WorkerGroupTest, ALostRankBreaksTheGroupUntilItComesBack) {
  std::unique_ptr<Rank> leader = StartRank(0, 2);
  std::unique_ptr<Rank> follower = StartRank(1, 2);
  ASSERT_TRUE(leader->WaitReady(true)) << leader->why();
  ASSERT_TRUE(follower->WaitReady(true)) << follower->why();

  follower.reset();  // The rank's process went away.
  ASSERT_TRUE(leader->WaitReady(false)) << "the leader kept a broken group";
  EXPECT_FALSE(leader->why().empty());
  const std::vector<int32_t> prompt =
      testing::RandomTokens(40, random_.shape.vocab_size, 6);
  WorkerGroup& group = leader->group();
  const Generated refused =
      Generate(group.forward_model(), group.group_pool(), prompt, 4);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kUnavailable)
      << refused.status;

  follower = StartRank(1, 2);  // It restarts: a new generation forms.
  ASSERT_TRUE(leader->WaitReady(true)) << leader->why();
  ASSERT_TRUE(follower->WaitReady(true)) << follower->why();
  ExpectSame(Generate(group.forward_model(), group.group_pool(), prompt, 4),
             OneRank(prompt, 4));
}

TEST_F(WorkerGroupTest, AFollowerStopsWithoutWaitingForTheNextPlan) {
  // Pings every 5 s: a follower waits up to 50 s for the next one.
  const absl::Duration heartbeat = absl::Seconds(5);
  std::unique_ptr<Rank> leader = StartRank(0, 2, absl::Seconds(5), heartbeat);
  std::unique_ptr<Rank> follower = StartRank(1, 2, absl::Seconds(5), heartbeat);
  ASSERT_TRUE(leader->WaitReady(true)) << leader->why();
  ASSERT_TRUE(follower->WaitReady(true)) << follower->why();
  const absl::Time start = absl::Now();
  follower.reset();
  // Its receive was aborted at once: not waited out (50 s), nor given up on
  // after a grace (the thread used to be left running after 3 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(WorkerGroupTest, AGroupMissingARankNeverFormsAndSaysSo) {
  std::unique_ptr<Rank> leader = StartRank(0, 2, absl::Milliseconds(500));
  // No rank 1: the attempt to form times out and says why.
  ASSERT_TRUE(leader->WaitProblem(absl::Seconds(20)));
  EXPECT_THAT(leader->why(), HasSubstr("did not form"));
}

}  // namespace
}  // namespace longctx
