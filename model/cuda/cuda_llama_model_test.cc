// The GPU model against the CPU model (llama_model.h) on the same weights and
// the same forward steps: whole prompts, chunked prefill, decode, batches of
// mixed lengths, prompts that are not a multiple of the block size; the
// decode graphs against eager steps; KV blocks written on one device restored
// on the other, directly and through a memory store; and the engine
// generating the same tokens on both. Every case skips without a GPU (CI).
//
// Tolerances, in units of the row's largest CPU logit magnitude (scale):
//  * fp32 compute, decode attention kernel only: 1e-4. Both sides compute in
//    fp32 and store K, V as fp16; only summation order differs.
//  * fp32 compute with the tensor-core prefill kernel: 1e-2. q and the
//    softmax weights are rounded to fp16 (2^-11 relative) before the
//    products, in every layer.
//  * bf16 compute: 6e-2. Every GEMM input is rounded to bf16 (2^-8
//    relative), layer after layer; greedy tokens must still agree wherever
//    the CPU's top-2 margin exceeds 0.1 of the scale.
#include "model/cuda/cuda_llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "engine/engine.h"
#include "engine/kv_offloader.h"
#include "gtest/gtest.h"
#include "kvblock/block_keys.h"
#include "memory_store/block_store.h"
#include "memory_store/memory_store_service_impl.h"
#include "memory_store/store_client.h"
#include "memory_store/testing/in_process_store.h"
#include "model/cuda/device_memory.h"
#include "model/llama_model.h"
#include "model/testing/random_llama.h"
#include "prometheus/registry.h"
#include "services/common/grpc_server.h"

namespace longctx::cuda {
namespace {

using kernels::ComputePrecision;

bool HaveGpu() { return QueryDevice(0).ok(); }

#define SKIP_WITHOUT_GPU()                                 \
  do {                                                     \
    if (!HaveGpu()) GTEST_SKIP() << "no CUDA device here"; \
  } while (0)

// A model shape: head_dim 64 and 128 take the tensor-core prefill kernel,
// head_dim 12 only the decode kernel.
LlamaShape Shape(int hidden, int layers, int heads, int kv_heads, int head_dim,
                 int ffn, int vocab) {
  LlamaShape s;
  s.hidden_size = hidden;
  s.num_layers = layers;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.intermediate_size = ffn;
  s.vocab_size = vocab;
  s.rms_norm_eps = 1e-5f;
  s.rope.theta = 500000.0;
  return s;
}

struct Case {
  const char* name;
  LlamaShape shape;
  bool biases, tied;
  int block_size;
};

std::vector<Case> Cases() {
  return {
      {"d64_gqa_bias_block16", Shape(256, 2, 4, 2, 64, 512, 300), true, false,
       16},
      {"d128_mqa_tied_block256", Shape(512, 2, 4, 1, 128, 384, 257), false,
       true, 256},
      {"d12_random_block7", Shape(40, 3, 6, 2, 12, 72, 97), true, false, 7},
  };
}

// One forward call: for each span, the sequence, how many of its next tokens
// to run, and whether its last token's logits are wanted.
struct SpanSpec {
  int seq;
  int n;
  bool want = true;
};
using Step = std::vector<SpanSpec>;

// Sequences with their tokens and blocks, run step by step on one model.
class Runner {
 public:
  Runner(ForwardModel* model, KvBlockPool* pool, int vocab)
      : model_(model), pool_(pool), vocab_(vocab) {}

  // Adds a sequence of `tokens` (blocks for all of them); returns its id.
  int AddSeq(std::vector<int32_t> tokens) {
    const int b = pool_->layout().block_size;
    Seq seq;
    seq.tokens = std::move(tokens);
    for (size_t i = 0; i < (seq.tokens.size() + b - 1) / b; ++i) {
      seq.blocks.push_back(*pool_->Allocate());
    }
    seqs_.push_back(std::move(seq));
    return static_cast<int>(seqs_.size()) - 1;
  }

  // Runs one step; appends the wanted logits rows to `out`.
  absl::Status Run(const Step& step, std::vector<std::vector<float>>* out) {
    std::vector<SeqSpan> spans;
    int rows = 0;
    for (const SpanSpec& spec : step) {
      Seq& seq = seqs_[spec.seq];
      SeqSpan span;
      span.start = seq.done;
      span.tokens = absl::MakeConstSpan(seq.tokens).subspan(seq.done, spec.n);
      span.blocks = seq.blocks;
      span.want_logits = spec.want;
      spans.push_back(span);
      rows += spec.want && spec.n > 0 ? 1 : 0;
    }
    std::vector<float> logits(static_cast<size_t>(rows) * vocab_);
    absl::Status status = model_->Forward(spans, *pool_, logits.data());
    if (!status.ok()) return status;
    for (const SpanSpec& spec : step) seqs_[spec.seq].done += spec.n;
    for (int r = 0; r < rows; ++r) {
      out->emplace_back(logits.begin() + r * vocab_,
                        logits.begin() + (r + 1) * vocab_);
    }
    return absl::OkStatus();
  }

  const std::vector<int>& blocks(int seq) const { return seqs_[seq].blocks; }

 private:
  struct Seq {
    std::vector<int32_t> tokens;
    std::vector<int> blocks;
    int done = 0;
  };
  ForwardModel* model_;
  KvBlockPool* pool_;
  int vocab_;
  std::vector<Seq> seqs_;
};

// A script: the sequences' lengths and the steps over them.
struct Script {
  const char* name;
  std::vector<int> lengths;
  std::vector<Step> steps;
};

std::vector<Script> Scripts() {
  std::vector<Script> scripts;
  // A whole prompt that ends mid-block, then decode.
  scripts.push_back({"whole_prompt_then_decode",
                     {306},
                     {{{0, 300}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}}}});
  // Chunked prefill in uneven chunks (one wants no logits), then decode.
  scripts.push_back({"chunked_prefill",
                     {707},
                     {{{0, 128, false}},
                      {{0, 200}},
                      {{0, 1}},
                      {{0, 371}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}},
                      {{0, 1}}}});
  // Mixed batches: decodes beside prefill chunks beside a 1-token prompt,
  // then decode batches of 5 and 3 (graph buckets 8 and 4), the last one
  // with a sequence that wants no logits.
  Script mixed{"mixed_batches", {90, 260, 1, 48, 20, 30}, {}};
  mixed.steps.push_back({{0, 80}, {1, 64}});
  mixed.steps.push_back({{0, 1}, {1, 100}, {2, 1}});
  mixed.steps.push_back({{0, 1}, {1, 90}, {2, 0, false}, {3, 40}});
  mixed.steps.push_back({{0, 1}, {1, 1}, {3, 1}, {4, 12}, {5, 20}});
  for (int i = 0; i < 4; ++i) {
    mixed.steps.push_back({{0, 1}, {1, 1}, {3, 1}, {4, 1}, {5, 1}});
  }
  mixed.steps.push_back({{0, 1}, {3, 1}, {4, 1}});
  mixed.steps.push_back({{0, 1}, {4, 1}, {3, 1}});
  // A decode step (a graph's) where one sequence wants no logits.
  mixed.steps.push_back({{0, 1}, {4, 1, false}, {3, 1}});
  scripts.push_back(mixed);
  return scripts;
}

// Runs `script` on `model` over a fresh pool, returning every logits row.
std::vector<std::vector<float>> RunScript(ForwardModel* model,
                                          KvBlockPool* pool, int vocab,
                                          const Script& script, uint32_t seed) {
  Runner runner(model, pool, vocab);
  for (size_t i = 0; i < script.lengths.size(); ++i) {
    runner.AddSeq(testing::RandomTokens(script.lengths[i], vocab,
                                        seed + static_cast<uint32_t>(i)));
  }
  std::vector<std::vector<float>> rows;
  for (const Step& step : script.steps) {
    absl::Status status = runner.Run(step, &rows);
    EXPECT_TRUE(status.ok()) << status;
    if (!status.ok()) break;
  }
  return rows;
}

// Largest |a - b| over each row, in units of the row's scale; and how many
// rows' argmax differ where `want`'s top-2 margin exceeds `margin` scales.
struct Diff {
  double max_err = 0;
  int argmax_mismatches = 0;
  int rows = 0;
};

Diff Compare(const std::vector<std::vector<float>>& want,
             const std::vector<std::vector<float>>& got, double margin) {
  Diff d;
  EXPECT_EQ(want.size(), got.size());
  for (size_t r = 0; r < std::min(want.size(), got.size()); ++r) {
    double scale = 1.0;
    for (float v : want[r]) scale = std::max(scale, double(std::fabs(v)));
    for (size_t i = 0; i < want[r].size(); ++i) {
      const double err = std::fabs(double(got[r][i]) - want[r][i]) / scale;
      if (!(err <= d.max_err)) d.max_err = std::isnan(err) ? 1e30 : err;
    }
    std::vector<float> sorted = want[r];
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(),
                      std::greater<float>());
    const auto top = [](const std::vector<float>& v) {
      return std::max_element(v.begin(), v.end()) - v.begin();
    };
    if ((sorted[0] - sorted[1]) / scale > margin &&
        top(want[r]) != top(got[r])) {
      ++d.argmax_mismatches;
    }
    ++d.rows;
  }
  return d;
}

std::unique_ptr<KvBlockPool> DevicePool(const KvLayout& layout, int blocks) {
  auto memory = DeviceKvMemory::Create(0, layout.BlockBytes() * blocks);
  EXPECT_TRUE(memory.ok()) << memory.status();
  if (!memory.ok()) return nullptr;
  return *KvBlockPool::CreateIn(layout, *std::move(memory));
}

std::unique_ptr<KvBlockPool> HostPool(const KvLayout& layout, int blocks) {
  return *KvBlockPool::Create(layout, layout.BlockBytes() * blocks);
}

struct Models {
  testing::RandomLlama weights;
  std::unique_ptr<LlamaModel> cpu;
};

Models MakeCpu(const Case& c) {
  Models m;
  m.weights = testing::MakeRandomLlamaOfShape(c.shape, c.biases, c.tied, 5);
  m.cpu = *LlamaModel::Create(m.weights.shape, m.weights.weights, {});
  return m;
}

std::unique_ptr<CudaLlamaModel> MakeGpu(const Models& m,
                                        ComputePrecision precision,
                                        bool tensor_cores, bool graphs) {
  CudaModelOptions options;
  options.precision = precision;
  options.tensor_core_attention = tensor_cores;
  options.cuda_graphs = graphs;
  options.max_graph_batch = 8;
  auto gpu =
      CudaLlamaModel::Create(m.weights.shape, m.weights.weights, options);
  EXPECT_TRUE(gpu.ok()) << gpu.status();
  return gpu.ok() ? *std::move(gpu) : nullptr;
}

// Runs every script of every case on the CPU and on the GPU configured as
// asked, and checks the logits within `tol` scales (and argmax agreement
// where the CPU's margin exceeds `margin` scales).
void CheckAgainstCpu(ComputePrecision precision, bool tensor_cores, bool graphs,
                     double tol, double margin) {
  for (const Case& c : Cases()) {
    Models m = MakeCpu(c);
    auto gpu = MakeGpu(m, precision, tensor_cores, graphs);
    ASSERT_NE(gpu, nullptr);
    const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
    for (const Script& script : Scripts()) {
      auto cpu_pool = HostPool(layout, 200);
      auto gpu_pool = DevicePool(layout, 200);
      ASSERT_NE(gpu_pool, nullptr);
      const auto want =
          RunScript(m.cpu.get(), cpu_pool.get(), c.shape.vocab_size, script, 3);
      const auto got =
          RunScript(gpu.get(), gpu_pool.get(), c.shape.vocab_size, script, 3);
      const Diff d = Compare(want, got, margin);
      std::printf(
          "  %s / %s: %d rows, max err %.3g scales (tol %.0e), %d "
          "argmax mismatches\n",
          c.name, script.name, d.rows, d.max_err, tol, d.argmax_mismatches);
      EXPECT_LE(d.max_err, tol) << c.name << " / " << script.name;
      EXPECT_EQ(d.argmax_mismatches, 0) << c.name << " / " << script.name;
    }
    if (graphs) {
      EXPECT_GT(gpu->graph_steps(), 0) << "no decode step replayed a graph";
    }
  }
}

TEST(CudaLlamaModelTest, Fp32DecodeKernelMatchesCpu) {
  SKIP_WITHOUT_GPU();
  CheckAgainstCpu(ComputePrecision::kFp32, /*tensor_cores=*/false,
                  /*graphs=*/false, 1e-4, 0.0);
}

TEST(CudaLlamaModelTest, Fp32TensorCoresAndGraphsMatchCpu) {
  SKIP_WITHOUT_GPU();
  CheckAgainstCpu(ComputePrecision::kFp32, true, true, 1e-2, 0.02);
}

TEST(CudaLlamaModelTest, Bf16MatchesCpuWithinBf16Tolerance) {
  SKIP_WITHOUT_GPU();
  CheckAgainstCpu(ComputePrecision::kBf16, true, true, 6e-2, 0.1);
}

TEST(CudaLlamaModelTest, GraphDecodeEqualsEagerDecode) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : Cases()) {
    Models m = MakeCpu(c);
    // fp32: in bf16, a batch padded to its bucket may get another GEMM
    // algorithm, whose last-bit differences bf16 rounding then magnifies.
    auto eager = MakeGpu(m, ComputePrecision::kFp32, true, false);
    auto graphed = MakeGpu(m, ComputePrecision::kFp32, true, true);
    ASSERT_NE(graphed, nullptr);
    const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
    for (const Script& script : Scripts()) {
      auto pool_a = DevicePool(layout, 200);
      auto pool_b = DevicePool(layout, 200);
      const auto want =
          RunScript(eager.get(), pool_a.get(), c.shape.vocab_size, script, 9);
      const auto got =
          RunScript(graphed.get(), pool_b.get(), c.shape.vocab_size, script, 9);
      // Equal but for the order of split-KV partial sums (a bucket's split
      // count can differ from the eager step's).
      const Diff d = Compare(want, got, 0.0);
      EXPECT_LE(d.max_err, 1e-5) << c.name << " / " << script.name;
    }
    EXPECT_GT(graphed->graph_steps(), 0);
    EXPECT_GT(graphed->graphs(), 1) << "expected several batch buckets";
  }
}

TEST(CudaLlamaModelTest, RejectsBadInputAndRunsNothing) {
  SKIP_WITHOUT_GPU();
  const Case c = Cases()[0];
  Models m = MakeCpu(c);
  auto gpu = MakeGpu(m, ComputePrecision::kBf16, true, true);
  ASSERT_NE(gpu, nullptr);
  const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
  auto pool = DevicePool(layout, 4);
  std::vector<int32_t> tokens = {1, 2, c.shape.vocab_size};
  std::vector<int> blocks = {0};
  SeqSpan span;
  span.tokens = tokens;
  span.blocks = blocks;
  span.want_logits = true;
  std::vector<float> logits(c.shape.vocab_size);
  absl::Status status = gpu->Forward({span}, *pool, logits.data());
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  tokens[2] = 0;
  blocks[0] = 4;  // Outside the pool.
  status = gpu->Forward({span}, *pool, logits.data());
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  auto host = HostPool(layout, 4);
  blocks[0] = 0;
  status = gpu->Forward({span}, *host, logits.data());
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(gpu->health().ok());
  // And a good call after them works.
  status = gpu->Forward({span}, *pool, logits.data());
  EXPECT_TRUE(status.ok()) << status;
}

// Prefills the first `blocks_done` blocks of `tokens` on `from` (its pool
// `from_pool`), copies those blocks into `to_pool` through host memory, and
// runs the rest of the prompt on `to`; returns the last logits row.
std::vector<float> ContinueOnOtherDevice(ForwardModel* from,
                                         KvBlockPool* from_pool,
                                         ForwardModel* to, KvBlockPool* to_pool,
                                         const std::vector<int32_t>& tokens,
                                         int blocks_done, int vocab) {
  const int b = from_pool->layout().block_size;
  Runner first(from, from_pool, vocab);
  const int seq = first.AddSeq(tokens);
  std::vector<std::vector<float>> rows;
  EXPECT_TRUE(first.Run({{seq, blocks_done * b, false}}, &rows).ok());
  Runner second(to, to_pool, vocab);
  const int seq2 = second.AddSeq(tokens);
  std::vector<uint8_t> bytes(from_pool->layout().BlockBytes());
  for (int i = 0; i < blocks_done; ++i) {
    EXPECT_TRUE(from_pool->ReadBlock(first.blocks(seq)[i], bytes.data()).ok());
    EXPECT_TRUE(to_pool->WriteBlock(second.blocks(seq2)[i], bytes.data()).ok());
  }
  // The rest of the prompt, over the copied blocks.
  std::vector<SeqSpan> spans(1);
  spans[0].start = blocks_done * b;
  spans[0].tokens = absl::MakeConstSpan(tokens).subspan(blocks_done * b);
  spans[0].blocks = second.blocks(seq2);
  spans[0].want_logits = true;
  std::vector<float> logits(vocab);
  absl::Status status = to->Forward(spans, *to_pool, logits.data());
  EXPECT_TRUE(status.ok()) << status;
  return logits;
}

std::vector<float> Cold(ForwardModel* model, KvBlockPool* pool,
                        const std::vector<int32_t>& tokens, int vocab) {
  Runner runner(model, pool, vocab);
  const int seq = runner.AddSeq(tokens);
  std::vector<std::vector<float>> rows;
  EXPECT_TRUE(runner.Run({{seq, static_cast<int>(tokens.size())}}, &rows).ok());
  return rows.empty() ? std::vector<float>(vocab) : rows[0];
}

TEST(CudaLlamaModelTest, BlocksWrittenOnOneDeviceRestoreOnTheOther) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : Cases()) {
    Models m = MakeCpu(c);
    auto gpu = MakeGpu(m, ComputePrecision::kFp32, false, false);
    ASSERT_NE(gpu, nullptr);
    const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
    const int b = c.block_size;
    const std::vector<int32_t> tokens =
        testing::RandomTokens(3 * b + 5, c.shape.vocab_size, 21);
    auto cpu_pool = HostPool(layout, 64);
    auto gpu_pool = DevicePool(layout, 64);
    const auto cpu_cold = Cold(m.cpu.get(), HostPool(layout, 64).get(), tokens,
                               c.shape.vocab_size);
    const auto gpu_cold = Cold(gpu.get(), DevicePool(layout, 64).get(), tokens,
                               c.shape.vocab_size);
    // GPU blocks, finished on the CPU; CPU blocks, finished on the GPU.
    const auto gpu_to_cpu =
        ContinueOnOtherDevice(gpu.get(), gpu_pool.get(), m.cpu.get(),
                              cpu_pool.get(), tokens, 3, c.shape.vocab_size);
    auto cpu_pool2 = HostPool(layout, 64);
    auto gpu_pool2 = DevicePool(layout, 64);
    const auto cpu_to_gpu =
        ContinueOnOtherDevice(m.cpu.get(), cpu_pool2.get(), gpu.get(),
                              gpu_pool2.get(), tokens, 3, c.shape.vocab_size);
    const Diff a = Compare({cpu_cold}, {gpu_to_cpu}, 0);
    const Diff d = Compare({gpu_cold}, {cpu_to_gpu}, 0);
    std::printf("  %s: GPU blocks on CPU %.3g, CPU blocks on GPU %.3g scales\n",
                c.name, a.max_err, d.max_err);
    EXPECT_LE(a.max_err, 1e-4) << c.name;
    EXPECT_LE(d.max_err, 1e-4) << c.name;
  }
}

TEST(CudaLlamaModelTest, OffloadFromGpuRestoresOnCpuAndBack) {
  SKIP_WITHOUT_GPU();
  const Case c = Cases()[1];
  Models m = MakeCpu(c);
  auto gpu = MakeGpu(m, ComputePrecision::kBf16, true, true);
  ASSERT_NE(gpu, nullptr);
  const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
  const Hash128 fingerprint{1, 2};
  auto store = testing::InProcessStore::Start();
  auto client = store->NewClient();
  const std::vector<int32_t> tokens =
      testing::RandomTokens(3 * c.block_size, c.shape.vocab_size, 4);
  for (bool from_gpu : {true, false}) {
    auto gpu_pool = DevicePool(layout, 8);
    auto cpu_pool = HostPool(layout, 8);
    KvBlockPool* from_pool = from_gpu ? gpu_pool.get() : cpu_pool.get();
    KvBlockPool* to_pool = from_gpu ? cpu_pool.get() : gpu_pool.get();
    ForwardModel* from =
        from_gpu ? static_cast<ForwardModel*>(gpu.get()) : m.cpu.get();
    Runner runner(from, from_pool, c.shape.vocab_size);
    const int seq = runner.AddSeq(tokens);
    std::vector<std::vector<float>> rows;
    ASSERT_TRUE(runner.Run({{seq, 3 * c.block_size}}, &rows).ok());
    // The prompt's own keys, in a namespace per round.
    const std::vector<BlockKey> round_keys = ChainedBlockKeys(
        BlockKeySeed(fingerprint, from_gpu ? "from-gpu" : "from-cpu"), tokens,
        c.block_size);
    {
      KvOffloader offloader(client.get(), from_pool, fingerprint, {}, nullptr);
      for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(offloader.Offload(round_keys[i], runner.blocks(seq)[i],
                                      c.block_size));
      }
      offloader.WaitIdle();
    }
    std::vector<int> targets;
    for (int i = 0; i < 3; ++i) targets.push_back(*to_pool->Allocate());
    KvOffloader restorer(client.get(), to_pool, fingerprint, {}, nullptr);
    ASSERT_EQ(restorer.Restore(round_keys, targets), 3);
    std::vector<uint8_t> a(layout.BlockBytes()), b(layout.BlockBytes());
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(from_pool->ReadBlock(runner.blocks(seq)[i], a.data()).ok());
      ASSERT_TRUE(to_pool->ReadBlock(targets[i], b.data()).ok());
      EXPECT_TRUE(a == b) << "block " << i
                          << (from_gpu ? " from the GPU" : " from the CPU");
    }
  }
}

// The engine over the GPU model generates what it generates over the CPU
// model: continuous batching, chunked prefill, graphs for decode steps.
TEST(CudaLlamaModelTest, EngineGeneratesTheCpuEnginesTokens) {
  SKIP_WITHOUT_GPU();
  const Case c = Cases()[0];
  Models m = MakeCpu(c);
  auto gpu = MakeGpu(m, ComputePrecision::kFp32, false, true);
  ASSERT_NE(gpu, nullptr);
  const KvLayout layout = m.cpu->KvLayoutFor(c.block_size, KvDtype::kF16);
  auto run = [&](ForwardModel* model, KvBlockPool* pool) {
    EngineOptions options;
    options.prefill_chunk_tokens = 96;
    Engine engine(model, pool, options);
    const int kRequests = 4;
    std::vector<std::vector<int32_t>> out(kRequests);
    std::vector<absl::Notification> done(kRequests);
    for (int i = 0; i < kRequests; ++i) {
      GenerateParams params;
      params.prompt =
          testing::RandomTokens(1 + 150 * i, c.shape.vocab_size, 40 + i);
      params.temperature = 0;
      params.max_new_tokens = 12;
      auto id = engine.Submit(std::move(params), [&, i](TokenEvent event) {
        EXPECT_TRUE(event.status.ok()) << event.status;
        out[i].insert(out[i].end(), event.tokens.begin(), event.tokens.end());
        if (event.finished) done[i].Notify();
      });
      EXPECT_TRUE(id.ok()) << id.status();
    }
    for (auto& d : done) d.WaitForNotification();
    return out;
  };
  auto cpu_pool = HostPool(layout, 120);
  auto gpu_pool = DevicePool(layout, 120);
  const auto want = run(m.cpu.get(), cpu_pool.get());
  const auto got = run(gpu.get(), gpu_pool.get());
  EXPECT_EQ(want, got);
  EXPECT_GT(gpu->graph_steps(), 0);
}

}  // namespace
}  // namespace longctx::cuda
