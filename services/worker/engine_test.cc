#include "services/worker/engine.h"

#include <algorithm>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "services/worker/llama_model.h"
#include "services/worker/testing/random_llama.h"

namespace longctx {
namespace {

// Collects one request's events.
class Collector {
 public:
  TokenSink Sink() {
    return [this](TokenEvent event) {
      absl::MutexLock lock(&mu_);
      for (int32_t t : event.tokens) tokens_.push_back(t);
      events_ += 1;
      if (event.finished) {
        finished_ = true;
        reason_ = event.finish_reason;
        status_ = event.status;
      }
    };
  }

  // Waits for the final event; returns the tokens.
  std::vector<int32_t> Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&finished_));
    return tokens_;
  }

  bool WaitForTokens(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(tokens_.size()) >= n || finished_;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

  v1::FinishReason reason() {
    absl::MutexLock lock(&mu_);
    return reason_;
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  int events_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::FinishReason reason_ ABSL_GUARDED_BY(mu_) = v1::FINISH_REASON_UNSPECIFIED;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(/*blocks=*/64, EngineOptions()); }

  void Build(int blocks, const EngineOptions& options) {
    engine_.reset();
    random_ = testing::MakeRandomLlama(false, false, 21);
    model_ = *LlamaModel::Create(random_.shape, random_.weights, {});
    KvLayout layout = model_->KvLayoutFor(/*block_size=*/16, KvDtype::kF16);
    pool_ = *KvBlockPool::Create(layout, layout.BlockBytes() * blocks);
    engine_ = std::make_unique<Engine>(model_.get(), pool_.get(), options);
  }

  GenerateParams Greedy(std::vector<int32_t> prompt, int max_new) {
    GenerateParams params;
    params.prompt = std::move(prompt);
    params.temperature = 0;
    params.max_new_tokens = max_new;
    return params;
  }

  std::vector<int32_t> RunAlone(const GenerateParams& params) {
    Collector c;
    EXPECT_TRUE(engine_->Submit(params, c.Sink()).ok());
    return c.Wait();
  }

  testing::RandomLlama random_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvBlockPool> pool_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ConcurrentRequestsGiveTheTokensTheyGiveAlone) {
  std::vector<GenerateParams> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back(
        Greedy(testing::RandomTokens(7 + 13 * i, 97, 100 + i), 9 + i));
  }
  std::vector<std::vector<int32_t>> alone;
  for (const auto& r : requests) alone.push_back(RunAlone(r));

  std::vector<Collector> together(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(engine_->Submit(requests[i], together[i].Sink()).ok());
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(together[i].Wait(), alone[i]) << "request " << i;
    EXPECT_EQ(together[i].reason(), v1::FINISH_REASON_LENGTH);
  }
  EXPECT_EQ(pool_->used_blocks(), 0);
}

TEST_F(EngineTest, AFixedSeedGivesTheSameSampledOutput) {
  GenerateParams params = Greedy(testing::RandomTokens(20, 97, 1), 24);
  params.temperature = 1.0f;
  params.top_p = 0.9f;
  params.seed = 77;
  auto first = RunAlone(params);
  EXPECT_EQ(RunAlone(params), first);
  params.seed = 78;
  EXPECT_NE(RunAlone(params), first);
}

TEST_F(EngineTest, StopsAtAStopToken) {
  GenerateParams params = Greedy(testing::RandomTokens(11, 97, 2), 12);
  auto full = RunAlone(params);
  ASSERT_EQ(full.size(), 12u);
  // Stop at the first occurrence of the 5th token: generation ends there.
  const int32_t stop = full[4];
  size_t first = std::find(full.begin(), full.end(), stop) - full.begin();
  params.stop_token_ids = {stop};
  Collector c;
  ASSERT_TRUE(engine_->Submit(params, c.Sink()).ok());
  auto stopped = c.Wait();
  EXPECT_EQ(stopped,
            std::vector<int32_t>(full.begin(), full.begin() + first + 1));
  EXPECT_EQ(c.reason(), v1::FINISH_REASON_STOP_TOKEN);
}

TEST_F(EngineTest, CancelEndsTheRequestAndFreesItsKv) {
  Collector c;
  auto id =
      engine_->Submit(Greedy(testing::RandomTokens(30, 97, 3), 500), c.Sink());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(c.WaitForTokens(2, absl::Seconds(30)));
  EXPECT_GT(pool_->used_blocks(), 0);
  engine_->Cancel(*id);
  auto tokens = c.Wait();
  EXPECT_LT(tokens.size(), 500u);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pool_->used_blocks(), 0);
}

TEST_F(EngineTest, RequestsThatCanNeverFitAreResourceExhausted) {
  // 64 blocks of 16 tokens: 1024 tokens in all.
  Collector c;
  auto id = engine_->Submit(Greedy(testing::RandomTokens(1000, 97, 4), 100),
                            c.Sink());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(id.status().message().find("KV blocks"), std::string::npos);
}

TEST_F(EngineTest, AFullQueueIsResourceExhausted) {
  EngineOptions options;
  options.max_running = 1;
  options.max_waiting = 1;
  Build(64, options);
  Collector a, b, c;
  ASSERT_TRUE(engine_->Submit(Greedy({1, 2, 3}, 300), a.Sink()).ok());
  // Let the first one start running so the second occupies the only queue slot.
  ASSERT_TRUE(a.WaitForTokens(1, absl::Seconds(30)));
  ASSERT_TRUE(engine_->Submit(Greedy({4, 5}, 3), b.Sink()).ok());
  EXPECT_EQ(engine_->Submit(Greedy({6}, 3), c.Sink()).status().code(),
            absl::StatusCode::kResourceExhausted);
  a.Wait();
  b.Wait();
}

TEST_F(EngineTest, ALongPromptDoesNotStallRunningDecodes) {
  EngineOptions options;
  options.prefill_chunk_tokens = 64;
  Build(256, options);
  Collector decoding;
  ASSERT_TRUE(engine_->Submit(Greedy({1, 2, 3}, 200), decoding.Sink()).ok());
  ASSERT_TRUE(decoding.WaitForTokens(1, absl::Seconds(30)));
  // 2000 prompt tokens take 32 chunked steps; the running request decodes one
  // token in each of them.
  Collector long_prompt;
  ASSERT_TRUE(engine_
                  ->Submit(Greedy(testing::RandomTokens(2000, 97, 5), 1),
                           long_prompt.Sink())
                  .ok());
  long_prompt.Wait();
  EXPECT_TRUE(decoding.WaitForTokens(25, absl::ZeroDuration()));
  decoding.Wait();
}

}  // namespace
}  // namespace longctx
