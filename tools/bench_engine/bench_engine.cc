// bench_engine: prefill and decode throughput of the CPU engine on the
// benchmark shapes, as ratios to this machine's own baselines measured in the
// same run:
//
//   * the GEMM rate (oneDNN, M = N = K = 2048) in fp32 and bf16,
//   * the time to stream a buffer as large as the model's weights once (a tuned
//     read: 64-byte loads, several accumulators, all threads).
//
// It reports model-FLOP utilization (MFU) of prefill against the GEMM rate of
// the same precision, the batch-1 decode step time over the weight-streaming
// time, and attention alone against the GEMM rate. Weights are random (made in
// memory); speed does not depend on their values. With int8 among
// --weight_dtypes it also reports how far int8 weights move the
// log-probabilities from the same model's bf16 weights (values matter there).
//
//   bazel run -c opt //tools/bench_engine -- --threads=2 --shapes=S,M
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

// GCC 12 flags the deliberately undefined vectors inside its own AVX-512
// reduction intrinsics as uninitialized (GCC bug 105593, fixed in GCC 13), as
// kernels/cpu/avx512_util.h explains.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "engine/kv_block_pool.h"
#include "kernels/attention.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"
#include "kernels/threads.h"
#include "model/llama_model.h"
#include "tools/bench_engine/bench_models.h"
#ifdef LONGCTX_WITH_CUDA
#include "tools/bench_engine/gpu_bench.h"
#endif

ABSL_FLAG(int, threads, 2, "Compute threads.");
ABSL_FLAG(std::string, shapes, "S,M", "Model shapes to run: S, M.");
ABSL_FLAG(std::string, prefill_lengths, "512,2048,8192",
          "Prompt lengths for prefill (S also runs --long_prefill).");
ABSL_FLAG(int, long_prefill, 32768,
          "Extra prefill length on shape S; 0 skips.");
ABSL_FLAG(std::string, decode_batches, "1,16", "Decode batch sizes.");
ABSL_FLAG(int, decode_context, 2048,
          "Context length of each decoding sequence.");
ABSL_FLAG(std::string, long_decode_contexts, "32768,131072",
          "Contexts of the batch-1 decode rows whose step is compared with "
          "streaming the weights and the KV cache once; empty skips them.");
ABSL_FLAG(std::string, long_decode_kv_dtypes, "f16,bf16",
          "KV cache dtypes of the long-context decode rows (bf16 only with "
          "bf16 compute).");
ABSL_FLAG(std::string, prefill_kv_dtype, "f16",
          "KV cache dtype of the prefill and short decode rows: f16, or bf16 "
          "(with bf16 compute only; fp32 rows keep f16).");
ABSL_FLAG(int, attention_tokens, 16384,
          "Causal length of the attention-only run.");
ABSL_FLAG(int, prefill_chunk, 2048,
          "Prompt tokens per forward call in prefill.");
ABSL_FLAG(std::string, precisions, "fp32,bf16", "Compute precisions to run.");
ABSL_FLAG(std::string, weight_dtypes, "f32,bf16,int8",
          "Weight dtypes to run: f32, f16, bf16, or int8 (made as bf16 and "
          "quantized at load, --weight_dtype=int8).");
ABSL_FLAG(int, drift_tokens, 256,
          "With int8 among --weight_dtypes: tokens of the run that compares "
          "int8 weights with the same model in bf16 (half prefill, half "
          "decode steps); 0 skips.");
ABSL_FLAG(std::string, device, "cpu",
          "cpu, or cuda / cuda:N: the GPU benchmark (shape L, bf16; needs a "
          "build with --config=cuda).");
ABSL_FLAG(std::string, gpu_prefill_lengths, "8192,32768",
          "GPU: prompt lengths for prefill.");
ABSL_FLAG(int, gpu_prefill_chunk, 8192, "GPU: prompt tokens per forward step.");
ABSL_FLAG(std::string, gpu_decode_batches, "1,64", "GPU: decode batch sizes.");

namespace longctx {
namespace {

using kernels::ComputePrecision;
using kernels::DType;

double Seconds(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// --- Baselines ---------------------------------------------------------------

double GemmRate(ComputePrecision precision) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), w(n * n, 0.25f), c(n * n);
  auto packed =
      kernels::PackedWeight::Create(w.data(), DType::kF32, n, n, precision);
  if (!packed.ok()) return 0;
  kernels::Gemm gemm;
  (void)gemm.Run(a.data(), n, n, *packed, nullptr, c.data(), n);  // Warm up.
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    absl::Time start = absl::Now();
    (void)gemm.Run(a.data(), n, n, *packed, nullptr, c.data(), n);
    best = std::min(best, Seconds(start));
  }
  return 2.0 * n * n * n / best;
}

__attribute__((target("avx512f"))) float StreamOnce(const float* data,
                                                    size_t n) {
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(),
           acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    const size_t blocks = n / 64;
#pragma omp for schedule(static)
    for (size_t b = 0; b < blocks; ++b) {
      const float* p = data + b * 64;
      acc0 = _mm512_add_ps(acc0, _mm512_loadu_ps(p));
      acc1 = _mm512_add_ps(acc1, _mm512_loadu_ps(p + 16));
      acc2 = _mm512_add_ps(acc2, _mm512_loadu_ps(p + 32));
      acc3 = _mm512_add_ps(acc3, _mm512_loadu_ps(p + 48));
    }
    total += _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
  }
  return total;
}

// Sum of the floats of [p, p + bytes), 64-byte multiples, four accumulators.
__attribute__((target("avx512f"))) __m512 SumChunk(const uint8_t* p,
                                                   size_t bytes, __m512 acc) {
  __m512 acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(),
         acc3 = _mm512_setzero_ps();
  for (size_t b = 0; b + 256 <= bytes; b += 256) {
    const float* f = reinterpret_cast<const float*>(p + b);
    acc = _mm512_add_ps(acc, _mm512_loadu_ps(f));
    acc1 = _mm512_add_ps(acc1, _mm512_loadu_ps(f + 16));
    acc2 = _mm512_add_ps(acc2, _mm512_loadu_ps(f + 32));
    acc3 = _mm512_add_ps(acc3, _mm512_loadu_ps(f + 48));
  }
  return _mm512_add_ps(_mm512_add_ps(acc, acc1), _mm512_add_ps(acc2, acc3));
}

// Seconds to read the KV cache of `blocks` once in the order decode attention
// over a long context does (per layer, threads on runs of blocks, each
// block's keys then values of every kv head) with no arithmetic: what the
// access pattern alone costs. Best of several passes.
__attribute__((target("avx512f"))) double KvReadSeconds(
    KvBlockPool& pool, const std::vector<int>& blocks) {
  const KvLayout& layout = pool.layout();
  double best = 1e30;
  volatile float sink = 0;
  for (int pass = 0; pass < 6; ++pass) {
    const absl::Time start = absl::Now();
    float total = 0;
    for (int l = 0; l < layout.num_layers; ++l) {
#pragma omp parallel reduction(+ : total)
      {
        __m512 acc = _mm512_setzero_ps();
#pragma omp for schedule(static)
        for (size_t i = 0; i < blocks.size(); ++i) {
          acc = SumChunk(pool.K(blocks[i], l), layout.TensorBytes(), acc);
          acc = SumChunk(pool.V(blocks[i], l), layout.TensorBytes(), acc);
        }
        total += _mm512_reduce_add_ps(acc);
      }
    }
    sink = total;
    if (pass > 0) best = std::min(best, Seconds(start));
  }
  (void)sink;
  return best;
}

// Seconds to read `bytes` once, best of several passes over a buffer in memory
// (on transparent huge pages, as the KV pool and packed weights are).
double StreamSeconds(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<float, decltype(&std::free)> storage(
      static_cast<float*>(std::aligned_alloc(kHuge, size)), &std::free);
  madvise(storage.get(), size, MADV_HUGEPAGE);
  const absl::Span<float> buffer(storage.get(), size / sizeof(float));
  std::fill(buffer.begin(), buffer.end(), 1.0f);
  volatile float sink = StreamOnce(buffer.data(), buffer.size());
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    absl::Time start = absl::Now();
    sink = StreamOnce(buffer.data(), buffer.size());
    best = std::min(best, Seconds(start));
  }
  (void)sink;
  return best;
}

// --- Models ------------------------------------------------------------------

// Parameters in GEMMs per token (what prefill multiplies and decode streams).
double MatmulParams(const LlamaShape& s) {
  const double h = s.hidden_size, q = s.num_heads * s.head_dim,
               kv = s.num_kv_heads * s.head_dim, f = s.intermediate_size;
  return s.num_layers * (h * (q + 2 * kv) + q * h + 3 * h * f) +
         h * s.vocab_size;
}

// Output rows of the GEMMs: int8 weights keep a scale and a sum (8 bytes) each.
double MatmulRows(const LlamaShape& s) {
  const double h = s.hidden_size, q = s.num_heads * s.head_dim,
               kv = s.num_kv_heads * s.head_dim, f = s.intermediate_size;
  return s.num_layers * (q + 2 * kv + h + 2 * f + h) + s.vocab_size;
}

// Bytes of KV cache (fp16) a decode step at `context` reads in all layers.
double KvBytes(const LlamaShape& s, double context) {
  return s.num_layers * context * 2.0 * s.num_kv_heads * s.head_dim * 2;
}

// FLOPs of causal attention over n tokens in all layers: QK^T and PV, half
// masked.
double AttentionFlops(const LlamaShape& s, double n) {
  return s.num_layers * 4.0 * s.num_heads * s.head_dim * n * n / 2;
}

std::vector<int> IntList(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v;
    if (absl::SimpleAtoi(item, &v)) out.push_back(v);
  }
  return out;
}

struct Setup {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvBlockPool> pool;
};

Setup Build(const BenchModel& m, ComputePrecision precision,
            kernels::WeightDtype weight_dtype, int max_tokens) {
  Setup setup;
  LlamaModelOptions options;
  options.precision = precision;
  options.weight_dtype = weight_dtype;
  options.threads = absl::GetFlag(FLAGS_threads);
  auto model = LlamaModel::Create(m.shape, m.weights, options);
  if (!model.ok()) {
    std::fprintf(stderr, "model: %s\n",
                 std::string(model.status().message()).c_str());
    return setup;
  }
  setup.model = *std::move(model);
  auto kv_dtype = ParseKvDtype(absl::GetFlag(FLAGS_prefill_kv_dtype));
  if (!kv_dtype.ok() || precision != kernels::ComputePrecision::kBf16) {
    kv_dtype = KvDtype::kF16;
  }
  KvLayout layout = setup.model->KvLayoutFor(256, *kv_dtype);
  setup.pool = *KvBlockPool::Create(
      layout, layout.BlockBytes() * (max_tokens / 256 + 64), /*prefault=*/true);
  return setup;
}

// Seconds to prefill n tokens (in chunks), logits of the last one only.
double Prefill(Setup& setup, int n) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (i * 7919) % 32000;
  std::vector<int> blocks;
  for (int i = 0; i < (n + 255) / 256; ++i)
    blocks.push_back(*setup.pool->Allocate());
  std::vector<float> logits(32000);
  const int chunk = absl::GetFlag(FLAGS_prefill_chunk);
  // Warm-up: the first call of a shape creates its GEMM primitives (JIT),
  // as a server's first request does once.
  {
    const int len = std::min(chunk, n);
    SeqSpan span{absl::MakeConstSpan(tokens).subspan(0, len), 0, blocks, true};
    (void)setup.model->Forward({span}, *setup.pool, logits.data());
  }
  absl::Time start = absl::Now();
  for (int pos = 0; pos < n; pos += chunk) {
    const int len = std::min(chunk, n - pos);
    SeqSpan span{absl::MakeConstSpan(tokens).subspan(pos, len), pos, blocks,
                 pos + len == n};
    (void)setup.model->Forward({span}, *setup.pool, logits.data());
  }
  double seconds = Seconds(start);
  for (int b : blocks) setup.pool->Unref(b);
  return seconds;
}

// Seconds per decode step of `batch` sequences with `context` tokens each,
// their KV cache in `pool`.
double DecodeStep(LlamaModel& model, KvBlockPool& pool, int batch,
                  int context) {
  const int blocks_each = (context + 1 + 255) / 256;
  std::vector<std::vector<int>> blocks(batch);
  for (auto& b : blocks) {
    for (int i = 0; i < blocks_each; ++i) b.push_back(*pool.Allocate());
  }
  // The KV contents do not change the work; the cache is written by the steps.
  std::vector<int32_t> token(1, 42);
  std::vector<float> logits(size_t(batch) * 32000);
  std::vector<SeqSpan> spans;
  for (int s = 0; s < batch; ++s)
    spans.push_back({token, context, blocks[s], true});
  (void)model.Forward(spans, pool, logits.data());  // Warm up.
  const int steps = 8;
  double best = 1e30;
  for (int i = 0; i < steps; ++i) {
    absl::Time start = absl::Now();
    (void)model.Forward(spans, pool, logits.data());
    best = std::min(best, Seconds(start));
  }
  for (auto& b : blocks) {
    for (int id : b) pool.Unref(id);
  }
  return best;
}

// OneLayerKv is a pool holding one layer of `tokens` tokens of shape `s`
// (every byte 0x11) and the attention kernel's view of it.
struct OneLayerKv {
  std::unique_ptr<KvBlockPool> pool;
  std::vector<const void*> k, v;
  kernels::PagedKv view;
};

OneLayerKv MakeOneLayerKv(const LlamaShape& s, int tokens, KvDtype dtype) {
  OneLayerKv kv;
  KvLayout layout{1, s.num_kv_heads, s.head_dim, 256, dtype};
  const int blocks = (tokens + 255) / 256;
  kv.pool = *KvBlockPool::Create(layout, layout.BlockBytes() * blocks);
  for (int i = 0; i < blocks; ++i) {
    int b = *kv.pool->Allocate();
    std::fill(kv.pool->Data(b), kv.pool->Data(b) + layout.BlockBytes(), 0x11);
    kv.k.push_back(kv.pool->K(b, 0));
    kv.v.push_back(kv.pool->V(b, 0));
  }
  kv.view.k_blocks = kv.k.data();
  kv.view.v_blocks = kv.v.data();
  kv.view.dtype = dtype == KvDtype::kBf16 ? DType::kBf16 : DType::kF16;
  kv.view.block_size = 256;
  kv.view.num_kv_heads = s.num_kv_heads;
  kv.view.head_dim = s.head_dim;
  kv.view.num_tokens = tokens;
  return kv;
}

double AttentionOnly(int n, DType compute) {
  const LlamaShape s = Shape("S");
  const OneLayerKv kv = MakeOneLayerKv(s, n, KvDtype::kF16);
  std::vector<float> q(size_t(n) * s.num_heads * s.head_dim, 0.01f),
      o(q.size());
  kernels::AttentionParams params;
  params.num_heads = s.num_heads;
  params.compute = compute;
  const int64_t stride = int64_t{s.num_heads} * s.head_dim;
  absl::Time start = absl::Now();
  (void)kernels::FlashAttention(q.data(), n, stride, kv.view, params, o.data(),
                                stride, nullptr);
  const double seconds = Seconds(start);
  return 4.0 * s.num_heads * s.head_dim * double(n) * n / 2 / seconds;
}

// Seconds per byte of KV that decode attention (one query token) spends on
// arithmetic alone: the shape's one-layer KV of as many tokens as fit in the
// threads' L2 caches (about 1 MiB), read from cache over and over, so memory
// is not what it waits for. Times that per byte by a long context's KV bytes
// and the product is what attention would take if the cache streamed for
// free. Best of several passes.
double DecodeArithmeticSecondsPerByte(const LlamaShape& s, KvDtype kv_dtype,
                                      DType compute) {
  const int per_token = 2 * s.num_kv_heads * s.head_dim * 2;  // K and V.
  const int tokens = std::max(256, (1 << 20) / per_token / 256 * 256);
  const OneLayerKv kv = MakeOneLayerKv(s, tokens, kv_dtype);
  std::vector<float> q(size_t{1} * s.num_heads * s.head_dim, 0.01f),
      o(q.size());
  kernels::AttentionParams params;
  params.num_heads = s.num_heads;
  params.q_start_pos = tokens;
  params.compute = compute;
  const int64_t stride = int64_t{s.num_heads} * s.head_dim;
  constexpr int kCalls = 200;
  double best = 1e30;
  for (int pass = 0; pass < 6; ++pass) {
    const absl::Time start = absl::Now();
    for (int i = 0; i < kCalls; ++i) {
      (void)kernels::FlashAttention(q.data(), 1, stride, kv.view, params,
                                    o.data(), stride, nullptr);
    }
    if (pass > 0) best = std::min(best, Seconds(start) / kCalls);
  }
  return best / (double{tokens} * per_token);
}

// --precisions, less bf16 on a CPU without it.
std::vector<std::string> Precisions() {
  std::vector<std::string> precisions =
      absl::StrSplit(absl::GetFlag(FLAGS_precisions), ',', absl::SkipEmpty());
  if (!kernels::Bf16GemmSupported()) {
    precisions.erase(std::remove(precisions.begin(), precisions.end(), "bf16"),
                     precisions.end());
  }
  return precisions;
}

// --- Drift of int8 weights ---------------------------------------------------

// Log-softmax of a row of logits, in double.
std::vector<double> LogSoftmax(const float* logits, int n) {
  const double top = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(logits[i] - top);
  const double log_sum = top + std::log(sum);
  std::vector<double> out(n);
  for (int i = 0; i < n; ++i) out[i] = logits[i] - log_sum;
  return out;
}

// Log-softmax rows of `tokens` through the model: the last position of a
// prefill of the first half (oneDNN's int8 GEMMs), then one decode step per
// remaining token (the VNNI kernel).
std::vector<std::vector<double>> LogprobRows(
    Setup& setup, const std::vector<int32_t>& tokens) {
  const int n = static_cast<int>(tokens.size()),
            vocab = setup.model->vocab_size();
  std::vector<int> blocks;
  for (int i = 0; i < (n + 255) / 256; ++i)
    blocks.push_back(*setup.pool->Allocate());
  std::vector<float> logits(vocab);
  std::vector<std::vector<double>> rows;
  const int prompt = n / 2;
  SeqSpan span{absl::MakeConstSpan(tokens).subspan(0, prompt), 0, blocks, true};
  (void)setup.model->Forward({span}, *setup.pool, logits.data());
  rows.push_back(LogSoftmax(logits.data(), vocab));
  for (int pos = prompt; pos < n; ++pos) {
    SeqSpan step{absl::MakeConstSpan(tokens).subspan(pos, 1), pos, blocks,
                 true};
    (void)setup.model->Forward({step}, *setup.pool, logits.data());
    rows.push_back(LogSoftmax(logits.data(), vocab));
  }
  for (int b : blocks) setup.pool->Unref(b);
  return rows;
}

// Compares, per shape and compute precision, the bf16 model with the same
// weights quantized to int8: |log p_int8 - log p_bf16| over the vocabulary
// at the last position and over all positions, and how often the most
// likely token agrees.
void ReportInt8Drift() {
  const int n = absl::GetFlag(FLAGS_drift_tokens);
  const std::vector<std::string> dtypes = absl::StrSplit(
      absl::GetFlag(FLAGS_weight_dtypes), ',', absl::SkipEmpty());
  if (n < 2 || std::find(dtypes.begin(), dtypes.end(), "int8") == dtypes.end())
    return;
  std::printf(
      "\nDrift of int8 weights from the same bf16 weights, %d tokens (%d "
      "prefill, then decode steps); |difference of log-softmax| over the "
      "vocabulary:\n\n",
      n, n / 2);
  std::printf(
      "| shape | compute | last position: max | mean | all positions: max "
      "| mean | top-1 agreement |\n|---|---|---|---|---|---|---|\n");
  std::vector<int32_t> tokens(n);
  std::mt19937 rng(7);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 32000);
  for (absl::string_view shape_name :
       absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',', absl::SkipEmpty())) {
    auto m = MakeModel(std::string(shape_name), DType::kBf16);
    for (const std::string& precision_name : Precisions()) {
      const ComputePrecision precision = precision_name == "bf16"
                                             ? ComputePrecision::kBf16
                                             : ComputePrecision::kFp32;
      std::vector<std::vector<double>> rows[2];
      for (int q = 0; q < 2; ++q) {
        Setup setup = Build(
            *m, precision,
            q == 1 ? kernels::WeightDtype::kInt8 : kernels::WeightDtype::kAuto,
            n + 256);
        if (setup.model == nullptr) return;
        rows[q] = LogprobRows(setup, tokens);
      }
      double last_max = 0, last_sum = 0, all_max = 0, all_sum = 0;
      int agree = 0;
      const size_t vocab = rows[0][0].size();
      for (size_t r = 0; r < rows[0].size(); ++r) {
        const std::vector<double>&a = rows[0][r], &b = rows[1][r];
        double row_max = 0, row_sum = 0;
        for (size_t i = 0; i < vocab; ++i) {
          const double d = std::fabs(a[i] - b[i]);
          row_max = std::max(row_max, d);
          row_sum += d;
        }
        all_max = std::max(all_max, row_max);
        all_sum += row_sum;
        if (r + 1 == rows[0].size()) last_max = row_max, last_sum = row_sum;
        agree += std::max_element(a.begin(), a.end()) - a.begin() ==
                 std::max_element(b.begin(), b.end()) - b.begin();
      }
      std::printf("| %s | %s | %.4f | %.4f | %.4f | %.4f | %d/%zu |\n",
                  std::string(shape_name).c_str(), precision_name.c_str(),
                  last_max, last_sum / vocab, all_max,
                  all_sum / (vocab * rows[0].size()), agree, rows[0].size());
      std::fflush(stdout);
    }
  }
}

void Run() {
  const int threads = absl::GetFlag(FLAGS_threads);
  kernels::SetNumThreads(threads);
  omp_set_num_threads(threads);
  const std::vector<std::string> precisions = Precisions();
  const double rate_fp32 = GemmRate(ComputePrecision::kFp32);
  const double rate_bf16 =
      kernels::Bf16GemmSupported() ? GemmRate(ComputePrecision::kBf16) : 0;
  std::printf("# longctx engine benchmark, %d threads\n\n", threads);
  std::printf("Baselines: GEMM 2048^3 fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n\n",
              rate_fp32 / 1e9, rate_bf16 / 1e9);

  const int attention_tokens = absl::GetFlag(FLAGS_attention_tokens);
  if (attention_tokens > 0) {
    double rate = AttentionOnly(attention_tokens, DType::kF32);
    std::printf(
        "Attention alone, causal N=%d, shape S (fp16 KV): %.1f GFLOP/s = "
        "%.0f%% of fp32 GEMM rate (target >= 40%%)\n\n",
        attention_tokens, rate / 1e9, 100 * rate / rate_fp32);
    if (rate_bf16 > 0) {
      rate = AttentionOnly(attention_tokens, DType::kBf16);
      std::printf(
          "Attention alone, bf16 products, causal N=%d, shape S (fp16 KV): "
          "%.1f GFLOP/s = %.0f%% of bf16 GEMM rate\n\n",
          attention_tokens, rate / 1e9, 100 * rate / rate_bf16);
    }
  }

  std::printf("| shape | weights | compute | run | time | result | ratio |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (absl::string_view shape_name :
       absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',', absl::SkipEmpty())) {
    for (absl::string_view dtype_name : absl::StrSplit(
             absl::GetFlag(FLAGS_weight_dtypes), ',', absl::SkipEmpty())) {
      const DType dtype = dtype_name == "f32"   ? DType::kF32
                          : dtype_name == "f16" ? DType::kF16
                                                : DType::kBf16;
      const kernels::WeightDtype weight_dtype =
          dtype_name == "int8" ? kernels::WeightDtype::kInt8
                               : kernels::WeightDtype::kAuto;
      auto m = MakeModel(std::string(shape_name), dtype);
      for (const std::string& precision_name : precisions) {
        const ComputePrecision precision = precision_name == "bf16"
                                               ? ComputePrecision::kBf16
                                               : ComputePrecision::kFp32;
        const double rate =
            precision == ComputePrecision::kBf16 ? rate_bf16 : rate_fp32;
        std::vector<int> lengths =
            IntList(absl::GetFlag(FLAGS_prefill_lengths));
        if (shape_name == "S" && absl::GetFlag(FLAGS_long_prefill) > 0) {
          lengths.push_back(absl::GetFlag(FLAGS_long_prefill));
        }
        const std::vector<int> long_contexts =
            IntList(absl::GetFlag(FLAGS_long_decode_contexts));
        int max_tokens =
            std::max(*std::max_element(lengths.begin(), lengths.end()),
                     16 * (absl::GetFlag(FLAGS_decode_context) + 256));
        Setup setup = Build(*m, precision, weight_dtype, max_tokens);
        if (setup.model == nullptr) continue;
        // Packed GEMM weights: what a decode step must read once.
        const double weight_bytes =
            weight_dtype == kernels::WeightDtype::kInt8
                ? MatmulParams(m->shape) + 8 * MatmulRows(m->shape)
                : MatmulParams(m->shape) *
                      (precision == ComputePrecision::kBf16 ? 2 : 4);
        const double stream = StreamSeconds(static_cast<size_t>(weight_bytes));
        for (int n : lengths) {
          double seconds = Prefill(setup, n);
          double flops =
              2 * MatmulParams(m->shape) * n + AttentionFlops(m->shape, n);
          std::printf(
              "| %s | %s | %s | prefill N=%d | %.3f s | %.0f tok/s | MFU "
              "%.0f%% |\n",
              std::string(shape_name).c_str(), std::string(dtype_name).c_str(),
              precision_name.c_str(), n, seconds, n / seconds,
              100 * flops / seconds / rate);
          std::fflush(stdout);
        }
        for (int batch : IntList(absl::GetFlag(FLAGS_decode_batches))) {
          double step = DecodeStep(*setup.model, *setup.pool, batch,
                                   absl::GetFlag(FLAGS_decode_context));
          std::printf(
              "| %s | %s | %s | decode B=%d ctx=%d | %.2f ms/step | %.0f tok/s "
              "| "
              "%.2fx weight stream (%.2f ms) |\n",
              std::string(shape_name).c_str(), std::string(dtype_name).c_str(),
              precision_name.c_str(), batch,
              absl::GetFlag(FLAGS_decode_context), step * 1e3, batch / step,
              step / stream, stream * 1e3);
          std::fflush(stdout);
        }
        // Long context: the step reads the weights and the whole KV cache
        // once; the bound is the time to stream that many bytes.
        // Each context gets its own pool (on huge pages, prefaulted, as a
        // worker's), freed before the next.
        for (int context : long_contexts) {
          for (absl::string_view kv_name :
               absl::StrSplit(absl::GetFlag(FLAGS_long_decode_kv_dtypes), ',',
                              absl::SkipEmpty())) {
            auto kv_dtype = ParseKvDtype(std::string(kv_name));
            if (!kv_dtype.ok() || (*kv_dtype == KvDtype::kBf16 &&
                                   precision != ComputePrecision::kBf16)) {
              continue;
            }
            const KvLayout layout = setup.model->KvLayoutFor(256, *kv_dtype);
            auto pool = KvBlockPool::Create(
                layout, layout.BlockBytes() * (context / 256 + 2),
                /*prefault=*/true);
            if (!pool.ok()) continue;
            const double kv_bytes = KvBytes(m->shape, context);
            // The bound before and after the step: the faster counts.
            const size_t bytes = static_cast<size_t>(weight_bytes + kv_bytes);
            double bound = StreamSeconds(bytes);
            const double step = DecodeStep(*setup.model, **pool, 1, context);
            bound = std::min(bound, StreamSeconds(bytes));
            // The same KV bytes read in attention's order, no arithmetic.
            std::vector<int> blocks;
            for (int i = 0; i < (context + 1 + 255) / 256; ++i) {
              blocks.push_back(*(*pool)->Allocate());
            }
            const double pattern = KvReadSeconds(**pool, blocks);
            for (int b : blocks) (*pool)->Unref(b);
            // Attention's arithmetic alone, for this context's KV.
            const double arithmetic =
                DecodeArithmeticSecondsPerByte(
                    m->shape, *kv_dtype,
                    precision == ComputePrecision::kBf16 ? DType::kBf16
                                                         : DType::kF32) *
                kv_bytes;
            std::printf(
                "| %s | %s | %s | decode B=1 ctx=%d, %s KV | %.2f ms/step | "
                "%.1f tok/s | %.2fx stream of weights + KV (%.2f ms, %.0f MiB "
                "+ %.0f MiB); KV alone in attention's order %.2f ms; "
                "attention's arithmetic alone (KV in cache) %.2f ms |\n",
                std::string(shape_name).c_str(),
                std::string(dtype_name).c_str(), precision_name.c_str(),
                context, KvDtypeName(*kv_dtype), step * 1e3, 1 / step,
                step / bound, bound * 1e3, weight_bytes / (1 << 20),
                kv_bytes / (1 << 20), pattern * 1e3, arithmetic * 1e3);
            std::fflush(stdout);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::InitializeSymbolizer(argv[0]);
  absl::InstallFailureSignalHandler(absl::FailureSignalHandlerOptions());
  // Line by line: a report cut short still shows how far it got.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  absl::ParseCommandLine(argc, argv);
  const std::string device = absl::GetFlag(FLAGS_device);
  if (device == "cpu") {
    longctx::Run();
    longctx::ReportInt8Drift();
    return 0;
  }
  int index = 0;
  if (device != "cuda" && !(absl::StartsWith(device, "cuda:") &&
                            absl::SimpleAtoi(device.substr(5), &index))) {
    std::fprintf(stderr,
                 "bench_engine: --device must be cpu, cuda or cuda:N\n");
    return 2;
  }
#ifdef LONGCTX_WITH_CUDA
  longctx::GpuBenchOptions options;
  options.device = index;
  options.prefill_lengths =
      longctx::IntList(absl::GetFlag(FLAGS_gpu_prefill_lengths));
  options.prefill_chunk = absl::GetFlag(FLAGS_gpu_prefill_chunk);
  options.decode_batches =
      longctx::IntList(absl::GetFlag(FLAGS_gpu_decode_batches));
  options.decode_context = absl::GetFlag(FLAGS_decode_context);
  return longctx::RunGpuBenchmarks(options);
#else
  std::fprintf(stderr,
               "bench_engine: built without CUDA; build with --config=cuda\n");
  return 2;
#endif
}
