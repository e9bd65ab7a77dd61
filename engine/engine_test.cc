#include "engine/engine.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/kv_offloader.h"
#include "engine/testing/staged_memory.h"
#include "gtest/gtest.h"
#include "kvblock/block_keys.h"
#include "memory_store/block_store.h"
#include "memory_store/memory_store_service_impl.h"
#include "memory_store/store_client.h"
#include "memory_store/testing/in_process_store.h"
#include "model/llama_model.h"
#include "model/testing/random_llama.h"
#include "services/common/grpc_server.h"
#include "services/common/testing/gated_proxy.h"

namespace longctx {
namespace {

// Collects one request's events.
class Collector {
 public:
  TokenSink Sink() {
    return [this](TokenEvent event) {
      absl::MutexLock lock(&mu_);
      for (int32_t t : event.tokens) tokens_.push_back(t);
      for (auto& l : event.logprobs) logprobs_.push_back(std::move(l));
      cached_tokens_ = std::max(cached_tokens_, event.cached_tokens);
      memory_cached_tokens_ =
          std::max(memory_cached_tokens_, event.memory_cached_tokens);
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

  FinishReason reason() {
    absl::MutexLock lock(&mu_);
    return reason_;
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  int cached_tokens() {
    absl::MutexLock lock(&mu_);
    return cached_tokens_;
  }
  int memory_cached_tokens() {
    absl::MutexLock lock(&mu_);
    return memory_cached_tokens_;
  }
  std::vector<TokenLogprob> logprobs() {
    absl::MutexLock lock(&mu_);
    return logprobs_;
  }
  int num_tokens() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(tokens_.size());
  }
  bool finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  int events_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  FinishReason reason_ ABSL_GUARDED_BY(mu_) = FinishReason::kNotFinished;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  int cached_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int memory_cached_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<TokenLogprob> logprobs_ ABSL_GUARDED_BY(mu_);
};

// Log-probabilities of the chosen and the top alternative tokens agree. The
// suffix of a cached prompt is computed in other chunks than a cold prompt's,
// which moves the fp32 sums in the last bits only; 1e-4 is the model tests'
// fp32 tolerance.
void ExpectSameLogprobs(const std::vector<TokenLogprob>& a,
                        const std::vector<TokenLogprob>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << "token " << i;
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-4) << "token " << i;
    ASSERT_EQ(a[i].top.size(), b[i].top.size());
    for (size_t k = 0; k < a[i].top.size(); ++k) {
      EXPECT_EQ(a[i].top[k].token, b[i].top[k].token);
      EXPECT_NEAR(a[i].top[k].logprob, b[i].top[k].logprob, 1e-4);
    }
  }
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(/*blocks=*/64, EngineOptions()); }

  // A new model, pool and engine (and metrics, unless `options` has some).
  void Build(int blocks, EngineOptions options) {
    engine_.reset();
    random_ = testing::MakeRandomLlama(false, false, 21);
    model_ = *LlamaModel::Create(random_.shape, random_.weights, {});
    KvLayout layout = model_->KvLayoutFor(/*block_size=*/16, KvDtype::kF16);
    pool_ = staged_
                ? *KvBlockPool::CreateIn(
                      layout, std::make_unique<testing::StagedMemory>(
                                  layout.BlockBytes() * blocks))
                : *KvBlockPool::Create(layout, layout.BlockBytes() * blocks);
    if (options.metrics == nullptr) {
      metrics_registry_ = std::make_unique<prometheus::Registry>();
      metrics_ = std::make_unique<EngineMetrics>(*metrics_registry_);
      options.metrics = metrics_.get();
    }
    engine_ = std::make_unique<Engine>(model_.get(), pool_.get(), options);
  }

  double EngineCounter(const std::string& name) {
    for (const auto& family : metrics_registry_->Collect()) {
      if (family.name == name) return family.metric[0].counter.value;
    }
    return -1;
  }

  // Greedy, with the log-probabilities of the chosen and top 5 tokens.
  GenerateParams GreedyWithLogprobs(std::vector<int32_t> prompt, int max_new) {
    GenerateParams params = Greedy(std::move(prompt), max_new);
    params.logprobs = true;
    params.top_logprobs = 5;
    return params;
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
  std::unique_ptr<prometheus::Registry> metrics_registry_;
  std::unique_ptr<EngineMetrics> metrics_;
  // Whether Build puts the KV pool in StagedMemory (as a GPU's, to the
  // offloader).
  bool staged_ = false;
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
    EXPECT_EQ(together[i].reason(), FinishReason::kLength);
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
  EXPECT_EQ(c.reason(), FinishReason::kStopToken);
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

// A request that cannot start within --max_queue_wait leaves the queue with
// RESOURCE_EXHAUSTED naming the flag, and its place is free again.
TEST_F(EngineTest, ARequestWaitingTooLongIsResourceExhausted) {
  EngineOptions options;
  options.max_running = 1;
  options.max_waiting = 1;
  options.max_queue_wait = absl::Milliseconds(1);
  Build(64, options);
  Collector a, b, c;
  // `a` holds the only batch slot for hundreds of steps.
  auto a_id = engine_->Submit(Greedy({1, 2, 3}, 900), a.Sink());
  ASSERT_TRUE(a_id.ok());
  ASSERT_TRUE(a.WaitForTokens(1, absl::Seconds(30)));
  ASSERT_TRUE(engine_->Submit(Greedy({4, 5}, 3), b.Sink()).ok());
  EXPECT_TRUE(b.Wait().empty());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("--max_queue_wait"), std::string::npos)
      << b.status();
  EXPECT_NE(b.status().message().find("the limit is 1ms"), std::string::npos)
      << b.status();
  // Its place in the queue (of one) is free again.
  EXPECT_EQ(engine_->waiting(), 0);
  EXPECT_TRUE(engine_->Submit(Greedy({6}, 3), c.Sink()).ok());
  engine_->Cancel(*a_id);
  a.Wait();
  c.Wait();
  // `a` started before the limit: it ran until cancelled.
  EXPECT_EQ(a.status().code(), absl::StatusCode::kCancelled);
}

// A request whose blocks do not fit yet lets a smaller one behind it start
// (it would otherwise hold the queue while a long request runs)...
TEST_F(EngineTest, ARequestThatFitsGoesAheadOfOneThatDoesNot) {
  Build(12, EngineOptions());
  Collector a, big, small;
  // `a` holds 10 of the 12 blocks for 150 steps.
  auto a_id = engine_->Submit(Greedy({1, 2, 3}, 150), a.Sink());
  ASSERT_TRUE(a_id.ok());
  ASSERT_TRUE(a.WaitForTokens(1, absl::Seconds(30)));
  ASSERT_TRUE(engine_->Submit(Greedy({4, 5, 6}, 60), big.Sink()).ok());
  ASSERT_TRUE(engine_->Submit(Greedy({7, 8, 9}, 10), small.Sink()).ok());
  EXPECT_EQ(small.Wait().size(), 10u);
  EXPECT_LT(a.num_tokens(), 150) << "the small request waited for `a`";
  EXPECT_FALSE(big.finished());
  EXPECT_EQ(big.Wait().size(), 60u);
  EXPECT_EQ(a.Wait().size(), 150u);
}

// ...but only for --max_bypass_wait: after that the request that does not fit
// holds the queue until it does, so it never starves.
TEST_F(EngineTest, AnAgedRequestHoldsTheQueueUntilItFits) {
  EngineOptions options;
  options.max_bypass_wait = absl::ZeroDuration();
  Build(12, options);
  Collector a, big, small;
  ASSERT_TRUE(engine_->Submit(Greedy({1, 2, 3}, 150), a.Sink()).ok());
  ASSERT_TRUE(a.WaitForTokens(1, absl::Seconds(30)));
  ASSERT_TRUE(engine_->Submit(Greedy({4, 5, 6}, 60), big.Sink()).ok());
  ASSERT_TRUE(engine_->Submit(Greedy({7, 8, 9}, 10), small.Sink()).ok());
  EXPECT_EQ(small.Wait().size(), 10u);
  EXPECT_TRUE(a.finished()) << "the small request went ahead of `big`";
  EXPECT_EQ(big.Wait().size(), 60u);
}

// A request whose own deadline comes before --max_queue_wait gets
// DEADLINE_EXCEEDED when it passes while waiting.
TEST_F(EngineTest, ARequestPastItsDeadlineInTheQueueIsDeadlineExceeded) {
  EngineOptions options;
  options.max_running = 1;
  options.max_queue_wait = absl::Hours(1);
  Build(64, options);
  Collector a, b;
  auto a_id = engine_->Submit(Greedy({1, 2, 3}, 900), a.Sink());
  ASSERT_TRUE(a_id.ok());
  ASSERT_TRUE(a.WaitForTokens(1, absl::Seconds(30)));
  GenerateParams late = Greedy({4, 5}, 3);
  late.deadline = absl::Now() + absl::Milliseconds(1);
  ASSERT_TRUE(engine_->Submit(late, b.Sink()).ok());
  EXPECT_TRUE(b.Wait().empty());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDeadlineExceeded)
      << b.status();
  EXPECT_NE(b.status().message().find("deadline"), std::string::npos);
  EXPECT_EQ(engine_->waiting(), 0);
  engine_->Cancel(*a_id);
  a.Wait();
}

// The limits apply to waiting only: a request that started runs to its end
// however long that takes.
TEST_F(EngineTest, TheQueueWaitLimitDoesNotStopARunningRequest) {
  EngineOptions options;
  options.max_queue_wait = absl::Milliseconds(1);
  Build(64, options);
  Collector a;
  GenerateParams params = Greedy({1, 2, 3}, 40);
  params.deadline = absl::Now() + absl::Milliseconds(1);
  ASSERT_TRUE(engine_->Submit(params, a.Sink()).ok());
  // Admitted at the first step (the batch is empty), so never expired.
  EXPECT_EQ(a.Wait().size(), 40u);
  EXPECT_TRUE(a.status().ok()) << a.status();
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

TEST_F(EngineTest, AHotPrefixGivesTheSameTokensAndLogprobsAsCold) {
  // 100 prompt tokens in blocks of 16: 6 full blocks stay cached.
  GenerateParams params =
      GreedyWithLogprobs(testing::RandomTokens(100, 97, 40), 12);
  Collector cold;
  ASSERT_TRUE(engine_->Submit(params, cold.Sink()).ok());
  const std::vector<int32_t> cold_tokens = cold.Wait();
  EXPECT_EQ(cold.cached_tokens(), 0);
  EXPECT_EQ(pool_->used_blocks(), 0);
  EXPECT_EQ(pool_->cached_blocks(), 6);

  Collector hot;
  ASSERT_TRUE(engine_->Submit(params, hot.Sink()).ok());
  EXPECT_EQ(hot.Wait(), cold_tokens);
  ExpectSameLogprobs(hot.logprobs(), cold.logprobs());
  EXPECT_EQ(hot.cached_tokens(), 96);
  EXPECT_EQ(hot.memory_cached_tokens(), 96);
  EXPECT_EQ(EngineCounter("longctx_prefix_cache_hit_blocks_total"), 6);
  EXPECT_EQ(EngineCounter("longctx_prefix_cache_hit_tokens_total"), 96);
  EXPECT_EQ(EngineCounter("longctx_prefill_tokens_total"), 100 + 4);
  EXPECT_EQ(pool_->used_blocks(), 0);

  // A conversation that grows reuses the whole earlier prompt.
  GenerateParams longer = params;
  longer.prompt.insert(longer.prompt.end(), cold_tokens.begin(),
                       cold_tokens.end());
  for (int i = 0; i < 30; ++i) longer.prompt.push_back((i * 11) % 97);
  Collector grown;
  ASSERT_TRUE(engine_->Submit(longer, grown.Sink()).ok());
  grown.Wait();
  EXPECT_EQ(grown.memory_cached_tokens(), 96);
}

TEST_F(EngineTest, APromptOfWholeBlocksNeverSharesTheBlockOfItsLastToken) {
  // 96 tokens = 6 full blocks. The last token is computed again for its
  // logits, which writes block 5: that block is never shared, so 5 blocks
  // are.
  GenerateParams params =
      GreedyWithLogprobs(testing::RandomTokens(96, 97, 41), 10);
  Collector cold, hot;
  ASSERT_TRUE(engine_->Submit(params, cold.Sink()).ok());
  const auto cold_tokens = cold.Wait();
  ASSERT_TRUE(engine_->Submit(params, hot.Sink()).ok());
  EXPECT_EQ(hot.Wait(), cold_tokens);
  ExpectSameLogprobs(hot.logprobs(), cold.logprobs());
  EXPECT_EQ(hot.cached_tokens(), 80);
}

TEST_F(EngineTest, WithThePrefixCacheOffNothingIsReused) {
  EngineOptions options;
  options.prefix_cache = false;
  Build(64, options);
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 42), 4);
  auto first = RunAlone(params);
  EXPECT_EQ(pool_->cached_blocks(), 0);
  Collector again;
  ASSERT_TRUE(engine_->Submit(params, again.Sink()).ok());
  EXPECT_EQ(again.Wait(), first);
  EXPECT_EQ(again.cached_tokens(), 0);
}

TEST_F(EngineTest, TheCachePolicyDecidesWhatIsReusedAndKept) {
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 43), 4);
  params.cache_write = false;
  auto first = RunAlone(params);
  EXPECT_EQ(pool_->cached_blocks(), 0);
  params.cache_write = true;
  RunAlone(params);
  EXPECT_EQ(pool_->cached_blocks(), 6);
  params.cache_read = false;
  Collector c;
  ASSERT_TRUE(engine_->Submit(params, c.Sink()).ok());
  EXPECT_EQ(c.Wait(), first);
  EXPECT_EQ(c.cached_tokens(), 0);
}

TEST_F(EngineTest, EvictionUnderPressureTakesOnlyCachedBlocksNobodyUses) {
  // 64 blocks of 16 tokens.
  GenerateParams p1 = Greedy(testing::RandomTokens(100, 97, 50), 4);
  GenerateParams p2 = Greedy(testing::RandomTokens(100, 97, 51), 4);
  // `held` shares p1's 6 cached blocks and reserves 51 more (900 tokens);
  // `pressure` then needs 7 blocks while only 1 was never used: the 6 blocks
  // cached by p2 are evicted, never p1's, which `held` uses.
  GenerateParams held = p1;
  held.max_new_tokens = 800;
  GenerateParams pressure = Greedy(testing::RandomTokens(100, 97, 52), 12);
  // What each gives on its own, on an engine that caches nothing.
  EngineOptions no_cache;
  no_cache.prefix_cache = false;
  Build(64, no_cache);
  const auto held_alone = RunAlone(held);
  const auto pressure_alone = RunAlone(pressure);
  const auto p2_alone = RunAlone(p2);

  Build(64, EngineOptions());
  RunAlone(p1);
  RunAlone(p2);
  EXPECT_EQ(pool_->cached_blocks(), 12);
  Collector h;
  ASSERT_TRUE(engine_->Submit(held, h.Sink()).ok());
  ASSERT_TRUE(h.WaitForTokens(1, absl::Seconds(30)));
  EXPECT_EQ(h.memory_cached_tokens(), 96);
  EXPECT_EQ(pool_->free_blocks(), 7);
  Collector p;
  ASSERT_TRUE(engine_->Submit(pressure, p.Sink()).ok());
  EXPECT_EQ(p.Wait(), pressure_alone);
  // `held` has hundreds of decode steps left when `pressure` (one prefill and
  // 12 decode steps) is done.
  EXPECT_FALSE(h.finished());
  EXPECT_EQ(pool_->evicted_blocks(), 6);
  EXPECT_EQ(h.Wait(), held_alone);
  EXPECT_EQ(EngineCounter("longctx_prefix_cache_evicted_blocks_total"), 6);
  // p2's blocks are gone, p1's are not.
  Collector again2, again1;
  ASSERT_TRUE(engine_->Submit(p2, again2.Sink()).ok());
  EXPECT_EQ(again2.Wait(), p2_alone);
  EXPECT_EQ(again2.cached_tokens(), 0);
  ASSERT_TRUE(engine_->Submit(p1, again1.Sink()).ok());
  again1.Wait();
  EXPECT_EQ(again1.cached_tokens(), 96);
  EXPECT_EQ(pool_->used_blocks(), 0);
}

TEST_F(EngineTest, AdmissionCountsCachedBlocksAsFree) {
  // 16 blocks: the cache fills the whole pool, and a request that needs all
  // of it still runs.
  Build(16, EngineOptions());
  RunAlone(Greedy(testing::RandomTokens(250, 97, 53), 6));
  EXPECT_EQ(pool_->cached_blocks(), 15);
  EXPECT_EQ(pool_->free_blocks(), 16);
  GenerateParams big = Greedy(testing::RandomTokens(200, 97, 54), 56);
  Collector c;
  ASSERT_TRUE(engine_->Submit(big, c.Sink()).ok());
  EXPECT_EQ(c.Wait().size(), 56u);
  EXPECT_TRUE(c.status().ok());
}

TEST_F(EngineTest, CancelFreesTheBlocksButKeepsTheCachedPrefix) {
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 55), 4);
  RunAlone(params);
  GenerateParams longer = params;
  longer.max_new_tokens = 500;
  Collector c;
  auto id = engine_->Submit(longer, c.Sink());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(c.WaitForTokens(2, absl::Seconds(30)));
  EXPECT_EQ(c.memory_cached_tokens(), 96);
  engine_->Cancel(*id);
  c.Wait();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pool_->used_blocks(), 0);
  Collector again;
  ASSERT_TRUE(engine_->Submit(params, again.Sink()).ok());
  again.Wait();
  EXPECT_EQ(again.cached_tokens(), 96);
}

// A loopback port nothing listens on.
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The engine with a real memory_store (RocksDB on disk, served over gRPC on a
// loopback port) behind it.
class EngineStoreTest : public EngineTest {
 protected:
  void SetUp() override {
    shard_ = testing::InProcessStore::Start();
    store_ = &shard_->store();
    client_ = shard_->NewClient();
    Restart();
  }

  // A worker restart: new model, empty KV pool, same store.
  void Restart(StoreClient* client = nullptr) {
    engine_.reset();
    offloader_.reset();
    Build(/*blocks=*/64, EngineOptions());
    registry_ = std::make_unique<prometheus::Registry>();
    offloader_ = std::make_unique<KvOffloader>(
        client ? client : client_.get(), pool_.get(), kFingerprint,
        KvOffloaderOptions(), registry_.get());
    EngineOptions options;
    options.offloader = offloader_.get();
    options.fingerprint = kFingerprint;
    options.metrics = metrics_.get();
    engine_.reset();
    engine_ = std::make_unique<Engine>(model_.get(), pool_.get(), options);
  }

  // Runs a request to the end; returns its tokens and cached-token count.
  std::pair<std::vector<int32_t>, int> Run(const GenerateParams& params) {
    Collector c;
    RunInto(params, c);
    return {c.Wait(), c.cached_tokens()};
  }
  void RunInto(const GenerateParams& params, Collector& c) {
    EXPECT_TRUE(engine_->Submit(params, c.Sink()).ok());
    c.Wait();
    offloader_->WaitIdle();
  }

  double Counter(const std::string& name) {
    for (const auto& family : registry_->Collect()) {
      if (family.name == name) return family.metric[0].counter.value;
    }
    return -1;
  }

  static constexpr Hash128 kFingerprint{0x1234, 0x5678};
  std::unique_ptr<testing::InProcessStore> shard_;
  BlockStore* store_ = nullptr;  // shard_'s.
  std::unique_ptr<StoreClient> client_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<KvOffloader> offloader_;
};

TEST_F(EngineStoreTest, RestoredPrefixGivesTheSameTokensAsRecompute) {
  // 100 prompt tokens in blocks of 16: 6 full blocks are stored.
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 30), 12);
  auto [cold, cold_cached] = Run(params);
  EXPECT_EQ(cold_cached, 0);
  EXPECT_EQ(store_->Stats().blocks, 6);

  Restart();  // Memory emptied; only the store remembers.
  auto [restored, restored_cached] = Run(params);
  EXPECT_EQ(restored, cold);
  EXPECT_EQ(restored_cached, 96);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 6);

  // A prompt that shares only the first 40 tokens reuses the first 2 blocks.
  GenerateParams other = params;
  for (size_t i = 40; i < other.prompt.size(); ++i)
    other.prompt[i] = (i * 7) % 97;
  auto [tokens, cached] = Run(other);
  EXPECT_EQ(cached, 32);
}

// Requests of different cache namespaces (tenants) never share blocks, hot or
// stored: a tenant's second request is served from its own blocks only, and
// another tenant's request over the same prompt sees no cached token.
TEST_F(EngineStoreTest, NamespacesNeverShareBlocks) {
  GenerateParams a = Greedy(testing::RandomTokens(100, 97, 33), 6);
  a.cache_namespace = "tenant-a";
  GenerateParams b = a;
  b.cache_namespace = "tenant-b";
  auto [a_cold, a_cold_cached] = Run(a);
  EXPECT_EQ(a_cold_cached, 0);
  auto [b_cold, b_cold_cached] = Run(b);  // Hot for a, not for b.
  EXPECT_EQ(b_cold_cached, 0);
  EXPECT_EQ(b_cold, a_cold);
  EXPECT_EQ(store_->Stats().blocks, 12);  // 6 blocks per namespace.
  auto [a_hot, a_hot_cached] = Run(a);
  EXPECT_EQ(a_hot_cached, 96);

  Restart();
  GenerateParams c = a;
  c.cache_namespace = "tenant-c";
  auto [c_tokens, c_cached] = Run(c);
  EXPECT_EQ(c_cached, 0);
  EXPECT_EQ(c_tokens, a_cold);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 0);
  auto [b_restored, b_restored_cached] = Run(b);
  EXPECT_EQ(b_restored_cached, 96);
  EXPECT_EQ(b_restored, a_cold);
}

TEST_F(EngineStoreTest, ColdRestoredAndHotGiveTheSameTokensAndLogprobs) {
  GenerateParams params =
      GreedyWithLogprobs(testing::RandomTokens(100, 97, 60), 12);
  Collector cold, restored, hot;
  RunInto(params, cold);
  EXPECT_EQ(cold.cached_tokens(), 0);

  Restart();  // Memory emptied; only the store remembers.
  RunInto(params, restored);
  EXPECT_EQ(restored.Wait(), cold.Wait());
  ExpectSameLogprobs(restored.logprobs(), cold.logprobs());
  EXPECT_EQ(restored.cached_tokens(), 96);
  EXPECT_EQ(restored.memory_cached_tokens(), 0);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 6);
  EXPECT_EQ(EngineCounter("longctx_prefix_cache_hit_tokens_total"), 0);

  // Restored blocks are cached: the third run reads nothing from the store.
  RunInto(params, hot);
  EXPECT_EQ(hot.Wait(), cold.Wait());
  ExpectSameLogprobs(hot.logprobs(), cold.logprobs());
  EXPECT_EQ(hot.cached_tokens(), 96);
  EXPECT_EQ(hot.memory_cached_tokens(), 96);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 6);
  EXPECT_EQ(EngineCounter("longctx_prefix_cache_hit_tokens_total"), 96);
}

TEST_F(EngineStoreTest, TheBlockOfTheLastPromptTokenComesFromTheStore) {
  // 96 tokens = 6 full blocks: blocks 0-4 are shared from memory, block 5
  // (which the last token is written into again) is read from the store.
  GenerateParams params =
      GreedyWithLogprobs(testing::RandomTokens(96, 97, 61), 8);
  Collector cold, warm;
  RunInto(params, cold);
  RunInto(params, warm);
  EXPECT_EQ(warm.Wait(), cold.Wait());
  ExpectSameLogprobs(warm.logprobs(), cold.logprobs());
  EXPECT_EQ(warm.cached_tokens(), 95);
  EXPECT_EQ(warm.memory_cached_tokens(), 80);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 1);
}

TEST_F(EngineStoreTest, ADecodeKeepsProducingTokensWhileARestoreIsInFlight) {
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 62), 12);
  auto [cold, unused] = Run(params);
  // The worker restarts with its store behind a proxy that holds every
  // connection: a restore waits for as long as the test keeps it closed.
  auto proxy = *testing::GatedProxy::Start(shard_->address().port);
  StoreClientOptions options;
  options.call_timeout = absl::Seconds(120);  // Never reached.
  auto slow = *StoreClient::Create({{"127.0.0.1", proxy->port()}}, options);
  Restart(slow.get());

  // A short prompt has no full block: nothing to restore, it runs at once.
  Collector decoding, restoring;
  ASSERT_TRUE(engine_->Submit(Greedy({1, 2, 3}, 200), decoding.Sink()).ok());
  ASSERT_TRUE(decoding.WaitForTokens(1, absl::Seconds(30)));
  ASSERT_TRUE(engine_->Submit(params, restoring.Sink()).ok());
  // Every one of the 200 tokens is produced while the restore is stuck.
  EXPECT_EQ(decoding.Wait().size(), 200u);
  EXPECT_EQ(restoring.num_tokens(), 0);
  EXPECT_FALSE(restoring.finished());

  proxy->Open();
  EXPECT_EQ(restoring.Wait(), cold);
  EXPECT_EQ(restoring.cached_tokens(), 96);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 6);
  EXPECT_GE(proxy->accepted(), 1);
  engine_.reset();
  offloader_.reset();
}

TEST_F(EngineStoreTest, ARestoringRequestCanBeCancelled) {
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 63), 12);
  Run(params);
  auto proxy = *testing::GatedProxy::Start(shard_->address().port);
  StoreClientOptions options;
  options.call_timeout = absl::Seconds(120);
  auto slow = *StoreClient::Create({{"127.0.0.1", proxy->port()}}, options);
  Restart(slow.get());
  Collector c;
  auto id = engine_->Submit(params, c.Sink());
  ASSERT_TRUE(id.ok());
  // The restore has started once the store client knocks at the proxy.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (proxy->accepted() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GE(proxy->accepted(), 1);
  EXPECT_GT(pool_->used_blocks(), 0);
  engine_->Cancel(*id);
  // The blocks being written by the restore are freed once it ends.
  proxy->Open();
  c.Wait();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(c.logprobs().empty());
  offloader_->WaitIdle();
  EXPECT_EQ(pool_->used_blocks(), 0);
  engine_.reset();
  offloader_.reset();
}

TEST_F(EngineStoreTest, ACorruptedStoredBlockIsRecomputedNeverServed) {
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 31), 12);
  auto [cold, unused] = Run(params);
  // Flip one byte in layer 1 (part 2) of the third block.
  auto keys =
      ChainedBlockKeys(BlockKeySeed(kFingerprint, ""), params.prompt, 16);
  const std::string key = keys[2].key;
  const int num_parts = *store_->NumParts(key);
  std::vector<std::string> parts(num_parts);
  for (int p = 0; p < num_parts; ++p)
    ASSERT_TRUE(store_->GetPart(key, p, &parts[p]).ok());
  parts[2][parts[2].size() / 2] ^= 0x40;
  ASSERT_TRUE(store_->Delete({key}).ok());  // A Put never replaces a block.
  ASSERT_TRUE(store_->Put(key, parts).ok());

  Restart();
  auto [tokens, cached] = Run(params);
  EXPECT_EQ(tokens, cold);
  EXPECT_EQ(cached, 32);  // Blocks 0 and 1; block 2 onward recomputed.
  EXPECT_EQ(Counter("longctx_restore_corrupt_blocks_total"), 1);
}

TEST_F(EngineStoreTest, WithTheStoreDownRequestsStillSucceedByRecomputing) {
  GenerateParams params = Greedy(testing::RandomTokens(70, 97, 32), 8);
  auto [expected, unused] = Run(params);
  StoreClientOptions options;
  options.call_timeout = absl::Milliseconds(300);
  auto dead = *StoreClient::Create({{"127.0.0.1", DeadPort()}}, options);
  Restart(dead.get());
  auto [tokens, cached] = Run(params);
  EXPECT_EQ(tokens, expected);
  EXPECT_EQ(cached, 0);
  EXPECT_GE(Counter("longctx_offload_failed_blocks_total"), 1);
  engine_.reset();
  offloader_.reset();
}

// A pool the host reaches only by copies (a GPU's, to the offloader):
// offload and restore go through them, and the restored prefix gives the
// tokens the cold run gave.
TEST_F(EngineStoreTest, APoolInOtherMemoryRestoresTheSameTokens) {
  staged_ = true;
  Restart();
  GenerateParams params = Greedy(testing::RandomTokens(100, 97, 31), 12);
  auto [cold, cold_cached] = Run(params);
  EXPECT_EQ(cold_cached, 0);
  EXPECT_EQ(store_->Stats().blocks, 6);
  Restart();
  auto [restored, restored_cached] = Run(params);
  EXPECT_EQ(restored, cold);
  EXPECT_EQ(restored_cached, 96);
  EXPECT_EQ(Counter("longctx_restore_blocks_total"), 6);
}

// A model that fails for good after a few steps (a GPU fault): every running
// request ends with INTERNAL, the engine reports it once, and later requests
// fail the same way rather than hang.
class BreakingModel : public ForwardModel {
 public:
  BreakingModel(ForwardModel* model, int good_steps)
      : model_(model), good_steps_(good_steps) {}
  int vocab_size() const override { return model_->vocab_size(); }
  absl::Status Forward(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                       float* logits) override {
    if (steps_++ < good_steps_) return model_->Forward(spans, pool, logits);
    broken_ = absl::InternalError("CUDA error in layer 1's DecodeAttention");
    return broken_;
  }
  absl::Status health() const override { return broken_; }

 private:
  ForwardModel* const model_;
  const int good_steps_;
  int steps_ = 0;
  absl::Status broken_;
};

TEST_F(EngineTest, AModelBrokenForGoodFailsEveryRequestAndIsReportedOnce) {
  engine_.reset();
  BreakingModel broken(model_.get(), /*good_steps=*/3);
  absl::Mutex mu;
  int reports = 0;
  EngineOptions options;
  options.on_model_failure = [&](const absl::Status& why) {
    absl::MutexLock lock(&mu);
    ++reports;
    EXPECT_NE(why.message().find("DecodeAttention"), std::string::npos);
  };
  engine_ = std::make_unique<Engine>(&broken, pool_.get(), options);
  Collector a, b;
  ASSERT_TRUE(
      engine_->Submit(Greedy(testing::RandomTokens(20, 97, 1), 50), a.Sink())
          .ok());
  ASSERT_TRUE(
      engine_->Submit(Greedy(testing::RandomTokens(30, 97, 2), 50), b.Sink())
          .ok());
  a.Wait();
  b.Wait();
  for (Collector* c : {&a, &b}) {
    EXPECT_TRUE(absl::IsInternal(c->status())) << c->status();
    EXPECT_NE(c->status().message().find("DecodeAttention"), std::string::npos);
  }
  Collector later;
  ASSERT_TRUE(engine_->Submit(Greedy({1, 2, 3}, 5), later.Sink()).ok());
  later.Wait();
  EXPECT_TRUE(absl::IsInternal(later.status())) << later.status();
  engine_.reset();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(reports, 1);
  // Every block went back to the pool.
  EXPECT_EQ(pool_->used_blocks(), 0);
}

}  // namespace
}  // namespace longctx
