#include "parallel/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "gloo/rendezvous/hash_store.h"
#include "gtest/gtest.h"
#include "model/testing/random_llama.h"
#include "parallel/block_placer.h"
#include "parallel/gloo_communicator.h"

namespace longctx {
namespace {

using testing::MakeRandomLlama;
using testing::RandomLlama;
using testing::RandomTokens;

constexpr int kBlock = 16;

KvLayout LayoutFor(const LlamaShape& shape, KvDtype dtype) {
  KvLayout layout;
  layout.num_layers = shape.num_layers;
  layout.num_kv_heads = shape.num_kv_heads;
  layout.head_dim = shape.head_dim;
  layout.block_size = kBlock;
  layout.dtype = dtype;
  return layout;
}

std::unique_ptr<LlamaModel> MakeModel(const RandomLlama& m) {
  LlamaModelOptions options;
  options.threads = 1;  // Ranks share this machine's cores.
  auto model = LlamaModel::Create(m.shape, m.weights, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

// The logits at every position of `tokens`, from one model fed one token at a
// time over its own paged cache.
std::vector<std::vector<float>> ReferenceLogits(
    const RandomLlama& m, const std::vector<int32_t>& tokens, KvDtype dtype) {
  auto model = MakeModel(m);
  auto pool = KvBlockPool::Create(LayoutFor(m.shape, dtype), size_t{64} << 20);
  EXPECT_TRUE(pool.ok());
  const int nb = (static_cast<int>(tokens.size()) + kBlock - 1) / kBlock;
  std::vector<int> blocks;
  for (int i = 0; i < nb; ++i) blocks.push_back(*(*pool)->Allocate());
  std::vector<std::vector<float>> out;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    SeqSpan span;
    span.tokens = absl::MakeConstSpan(tokens).subspan(pos, 1);
    span.start = static_cast<int>(pos);
    span.blocks = blocks;
    span.want_logits = true;
    std::vector<float> row(m.shape.vocab_size);
    EXPECT_TRUE(model->Forward({span}, **pool, row.data()).ok());
    out.push_back(std::move(row));
  }
  return out;
}

// One sequence as the leader tracks it.
struct Seq {
  std::vector<int32_t> tokens;
  std::vector<BlockPlacer::Place> blocks;
  int computed = 0;
};

// A step: `n` more tokens of each listed sequence (n = 0 skips it).
using Schedule = std::vector<std::vector<int>>;

// Runs `schedule` over `seqs` on a group of P ranks connected by Gloo over
// loopback; every span asks for every token's logits, which are compared with
// the one-rank reference.
void CheckGroup(const RandomLlama& m, int P, RingOptions::Mode mode,
                KvDtype dtype, std::vector<Seq> seqs, const Schedule& schedule,
                bool random_placement) {
  std::vector<std::vector<std::vector<float>>> refs;
  for (const Seq& seq : seqs)
    refs.push_back(ReferenceLogits(m, seq.tokens, dtype));
  gloo::rendezvous::HashStore store;
  std::vector<std::thread> threads;
  const int blocks_per_rank = 64;
  for (int rank = 0; rank < P; ++rank) {
    threads.emplace_back([&, rank] {
      GlooOptions gloo;
      gloo.rank = rank;
      gloo.size = P;
      gloo.timeout = absl::Seconds(60);
      auto comm = GlooCommunicator::Connect(store, gloo);
      ASSERT_TRUE(comm.ok()) << comm.status();
      auto model = MakeModel(m);
      auto pool = KvBlockPool::Create(
          LayoutFor(m.shape, dtype),
          LayoutFor(m.shape, dtype).BlockBytes() * blocks_per_rank);
      ASSERT_TRUE(pool.ok());
      RingOptions options;
      options.mode = mode;
      RingStep ring(model.get(), pool->get(), comm->get(), options);
      if (rank != 0) {
        while (true) {
          auto plan = RecvStepPlan(**comm, absl::Seconds(60));
          ASSERT_TRUE(plan.ok()) << plan.status();
          if (plan->kind == StepPlan::kStop) return;
          ASSERT_TRUE(ring.Run(*plan, nullptr).ok());
        }
      }
      BlockPlacer placer(P, blocks_per_rank);
      std::mt19937 rng(P * 31 + static_cast<int>(mode));
      uint64_t step = 0;
      for (const std::vector<int>& counts : schedule) {
        StepPlan plan;
        plan.step = ++step;
        std::vector<int> which;
        for (size_t s = 0; s < seqs.size(); ++s) {
          if (counts[s] == 0) continue;
          Seq& seq = seqs[s];
          PlanSpan span;
          span.start = seq.computed;
          span.tokens.assign(seq.tokens.begin() + seq.computed,
                             seq.tokens.begin() + seq.computed + counts[s]);
          span.all_logits = true;
          const int nb = (span.end() + kBlock - 1) / kBlock;
          const int fresh = nb - static_cast<int>(seq.blocks.size());
          if (fresh > 0) {
            auto places = placer.PlaceBlocks(fresh);
            ASSERT_TRUE(places.ok()) << places.status();
            // Any placement is valid: shuffled, blocks of a rank are no
            // longer in runs.
            if (random_placement) {
              std::shuffle(places->begin(), places->end(), rng);
            }
            seq.blocks.insert(seq.blocks.end(), places->begin(), places->end());
          }
          for (int i = 0; i < nb; ++i) {
            span.owner.push_back(seq.blocks[i].rank);
            span.local.push_back(seq.blocks[i].local);
          }
          plan.spans.push_back(std::move(span));
          which.push_back(static_cast<int>(s));
        }
        ASSERT_TRUE(SendStepPlan(**comm, plan).ok());
        std::vector<float> logits(RingStep::LogitRows(plan) *
                                  m.shape.vocab_size);
        absl::Status status = ring.Run(plan, logits.data());
        ASSERT_TRUE(status.ok()) << status;
        int64_t row = 0;
        for (size_t k = 0; k < which.size(); ++k) {
          Seq& seq = seqs[which[k]];
          for (int pos = seq.computed; pos < seq.computed + counts[which[k]];
               ++pos, ++row) {
            const std::vector<float>& ref = refs[which[k]][pos];
            float scale = 1.0f;
            for (float v : ref) scale = std::max(scale, std::fabs(v));
            for (size_t v = 0; v < ref.size(); ++v) {
              ASSERT_NEAR(logits[row * ref.size() + v], ref[v], 1e-4f * scale)
                  << "P=" << P << " sequence " << which[k] << " position "
                  << pos << " logit " << v;
            }
          }
          seq.computed += counts[which[k]];
        }
      }
      StepPlan stop;
      stop.kind = StepPlan::kStop;
      ASSERT_TRUE(SendStepPlan(**comm, stop).ok());
    });
  }
  for (auto& t : threads) t.join();
}

// Prefill of `n` tokens in chunks of `chunk`, then `decode` single tokens.
Schedule OneSequence(int n, int chunk, int decode) {
  Schedule schedule;
  for (int done = 0; done < n; done += chunk) {
    schedule.push_back({std::min(chunk, n - done)});
  }
  for (int i = 0; i < decode; ++i) schedule.push_back({1});
  return schedule;
}

Seq MakeSeq(int n, int vocab, uint32_t seed) {
  Seq seq;
  seq.tokens = RandomTokens(n, vocab, seed);
  return seq;
}

TEST(RingAttentionTest, EveryGroupSizeMatchesOneRankAtEveryPosition) {
  const RandomLlama m = MakeRandomLlama(/*biases=*/true, /*tied=*/false, 7);
  for (int P : {1, 2, 3, 4}) {
    for (auto mode : {RingOptions::Mode::kPassKv, RingOptions::Mode::kPassQ,
                      RingOptions::Mode::kAuto}) {
      // A prompt that is not a multiple of the block, prefilled whole, then
      // decoded past a block boundary.
      const int n = 150;
      CheckGroup(m, P, mode, KvDtype::kF32,
                 {MakeSeq(n + 12, m.shape.vocab_size, P)},
                 OneSequence(n, n, 12), /*random_placement=*/false);
    }
  }
}

TEST(RingAttentionTest, ChunkedPrefillAndShortPrompts) {
  const RandomLlama m = MakeRandomLlama(/*biases=*/false, /*tied=*/true, 11);
  for (int P : {2, 3}) {
    for (int n : {1, 5, 37, 203}) {
      CheckGroup(m, P, RingOptions::Mode::kAuto, KvDtype::kF32,
                 {MakeSeq(n + 3, m.shape.vocab_size, n)}, OneSequence(n, 45, 3),
                 /*random_placement=*/true);
    }
  }
}

TEST(RingAttentionTest, BatchedSequencesAndFp16Cache) {
  const RandomLlama m = MakeRandomLlama(/*biases=*/true, /*tied=*/true, 3);
  // A decodes while B prefills in chunks; C joins late.
  const Schedule schedule = {{70, 0, 0}, {1, 45, 0}, {1, 45, 19},
                             {1, 13, 1}, {1, 1, 1},  {0, 1, 1}};
  for (int P : {2, 4}) {
    for (auto mode : {RingOptions::Mode::kPassKv, RingOptions::Mode::kAuto}) {
      CheckGroup(m, P, mode, KvDtype::kF16,
                 {MakeSeq(75, m.shape.vocab_size, 1),
                  MakeSeq(105, m.shape.vocab_size, 2),
                  MakeSeq(22, m.shape.vocab_size, 3)},
                 schedule, /*random_placement=*/false);
    }
  }
}

}  // namespace
}  // namespace longctx
