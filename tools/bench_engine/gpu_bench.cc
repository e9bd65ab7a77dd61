#include "tools/bench_engine/gpu_bench.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "kernels/cuda/gemm_cuda.h"
#include "model/cuda/cuda_llama_model.h"
#include "model/cuda/device_memory.h"
#include "tools/bench_engine/bench_models.h"

namespace longctx {
namespace {

using cuda::CudaLlamaModel;
using cuda::DeviceBuffer;
using kernels::DType;

// Seconds per call of `run` (already warmed up), timed with CUDA events over
// `reps` calls.
template <typename F>
double EventSeconds(F run, int reps) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) run();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1000.0 / reps;
}

// The cuBLASLt bf16 GEMM rate, M = N = K = 8192 (FLOP/s).
double GemmRate() {
  const int64_t n = 8192;
  DeviceBuffer a, b, c;
  if (!a.Allocate(n * n * 2, "bench").ok() ||
      !b.Allocate(n * n * 2, "bench").ok() ||
      !c.Allocate(n * n * 4, "bench").ok()) {
    return 0;
  }
  cudaMemset(a.get(), 0x3c, n * n * 2);  // bf16 ~0.0115, finite.
  cudaMemset(b.get(), 0x3c, n * n * 2);
  std::string error;
  auto gemm = kernels::cuda::CudaGemm::Create(size_t{32} << 20, &error);
  if (gemm == nullptr) return 0;
  auto run = [&] {
    (void)gemm->Run(DType::kBf16, a.get(), n, b.get(), c.as<float>(), n, n, n,
                    n, false, nullptr);
  };
  for (int i = 0; i < 3; ++i) run();
  cudaDeviceSynchronize();
  return 2.0 * n * n * n / EventSeconds(run, 10);
}

// Device copy bandwidth, bytes read plus written per second.
double CopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  DeviceBuffer src, dst;
  if (!src.Allocate(bytes, "bench").ok() || !dst.Allocate(bytes, "bench").ok())
    return 0;
  auto run = [&] {
    cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice);
  };
  for (int i = 0; i < 3; ++i) run();
  cudaDeviceSynchronize();
  return 2.0 * bytes / EventSeconds(run, 10);
}

// GEMM FLOPs per token in the layers (the LM head runs once per sequence).
double LayerFlopsPerToken(const LlamaShape& s) {
  const double h = s.hidden_size, q = s.num_heads * s.head_dim,
               kv = s.num_kv_heads * s.head_dim, f = s.intermediate_size;
  return 2.0 * s.num_layers * (h * (q + 2 * kv) + q * h + 3 * h * f);
}

double AttentionFlops(const LlamaShape& s, double n) {
  return s.num_layers * 4.0 * s.num_heads * s.head_dim * n * n / 2;
}

struct Bench {
  std::unique_ptr<CudaLlamaModel> model;
  std::unique_ptr<KvBlockPool> pool;
  std::vector<float> logits;
};

double Seconds(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// One line per kind of work: milliseconds and share of the device time.
void PrintProfile(const char* what, double wall_seconds,
                  const std::vector<std::pair<std::string, double>>& profile) {
  double total = 0;
  for (const auto& [label, ms] : profile) total += ms;
  std::printf("\n%s: %.3f ms on the device without a graph", what, total);
  if (wall_seconds > 0) {
    std::printf(" (the step took %.3f ms with one)", wall_seconds * 1e3);
  }
  std::printf("\n\n");
  std::printf("| work | ms | share |\n|---|---|---|\n");
  for (const auto& [label, ms] : profile) {
    std::printf("| %s | %.3f | %.0f%% |\n", label.c_str(), ms,
                100.0 * ms / std::max(total, 1e-9));
  }
}

// Prefill of one n-token prompt in chunks; seconds.
// Prefill of one n-token prompt in chunks; seconds. With `profile`, the
// last chunk runs once more, profiled (its KV rewritten with the same
// values), into *profile.
using Profile = std::vector<std::pair<std::string, double>>;
absl::StatusOr<double> Prefill(Bench& b, int n, int chunk,
                               Profile* profile = nullptr) {
  const int block = b.pool->layout().block_size;
  std::vector<int> blocks;
  for (int i = 0; i < (n + block - 1) / block; ++i) {
    auto id = b.pool->Allocate();
    if (!id.ok()) return id.status();
    blocks.push_back(*id);
  }
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (i * 7919) % 30000;
  const absl::Time start = absl::Now();
  for (int done = 0; done < n; done += chunk) {
    SeqSpan span;
    span.start = done;
    span.tokens = absl::MakeConstSpan(tokens).subspan(done, chunk);
    span.blocks = blocks;
    span.want_logits = done + chunk >= n;
    absl::Status status =
        b.model->Forward({span}, *b.pool, b.model->logits_buffer(1));
    if (!status.ok()) return status;
  }
  const double seconds = Seconds(start);
  if (profile != nullptr) {
    const int last = (n - 1) / chunk * chunk;
    SeqSpan span;
    span.start = last;
    span.tokens = absl::MakeConstSpan(tokens).subspan(last, chunk);
    span.blocks = blocks;
    span.want_logits = true;
    auto p = b.model->ProfileStep({span}, *b.pool, b.model->logits_buffer(1));
    if (!p.ok()) return p.status();
    *profile = *std::move(p);
  }
  for (int id : blocks) b.pool->Unref(id);
  return seconds;
}

// Median seconds of a decode step of `batch` sequences at `context` tokens.
absl::StatusOr<double> DecodeStep(Bench& b, int batch, int context,
                                  Profile* profile = nullptr) {
  const int block = b.pool->layout().block_size;
  const int steps = 20;
  const int per_seq = (context + steps + 4 + block - 1) / block;
  std::vector<std::vector<int>> blocks(batch);
  for (auto& list : blocks) {
    for (int i = 0; i < per_seq; ++i) {
      auto id = b.pool->Allocate();
      if (!id.ok()) return id.status();
      list.push_back(*id);
    }
  }
  std::vector<int32_t> token = {17};
  std::vector<double> times;
  for (int step = 0; step < steps + 3; ++step) {
    std::vector<SeqSpan> spans(batch);
    for (int i = 0; i < batch; ++i) {
      spans[i].start = context + step;
      spans[i].tokens = token;
      spans[i].blocks = blocks[i];
      spans[i].want_logits = true;
    }
    const absl::Time start = absl::Now();
    absl::Status status =
        b.model->Forward(spans, *b.pool, b.model->logits_buffer(batch));
    if (!status.ok()) return status;
    if (step >= 3) times.push_back(Seconds(start));  // After graph capture.
    if (profile != nullptr && step == steps + 2) {
      auto p =
          b.model->ProfileStep(spans, *b.pool, b.model->logits_buffer(batch));
      if (!p.ok()) return p.status();
      *profile = *std::move(p);
    }
  }
  for (auto& list : blocks) {
    for (int id : list) b.pool->Unref(id);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int RunGpuBenchmarks(const GpuBenchOptions& options) {
  auto device = cuda::QueryDevice(options.device);
  if (!device.ok()) {
    std::fprintf(stderr, "bench_engine: %s\n",
                 std::string(device.status().message()).c_str());
    return 1;
  }
  const double gemm = GemmRate();
  const double bandwidth = CopyBandwidth();
  std::printf("# longctx GPU benchmark: %s (cuda:%d, %d SMs)\n\n",
              device->name.c_str(), device->index, device->sm_count);
  std::printf(
      "Baselines (this run): cuBLASLt bf16 GEMM 8192^3 %.1f TFLOP/s; device "
      "copy %.2f TB/s (bytes read + written); the weight streaming time is "
      "the weights' bytes at that rate\n\n",
      gemm / 1e12, bandwidth / 1e12);

  const absl::Time made = absl::Now();
  std::unique_ptr<BenchModel> weights = MakeModel(options.shape, DType::kBf16);
  const LlamaShape s = weights->shape;  // A copy: the weights go soon.
  cuda::CudaModelOptions model_options;
  model_options.device = options.device;
  model_options.max_graph_batch = *std::max_element(
      options.decode_batches.begin(), options.decode_batches.end());
  auto model = CudaLlamaModel::Create(s, weights->weights, model_options);
  if (!model.ok()) {
    std::fprintf(stderr, "bench_engine: %s\n",
                 std::string(model.status().message()).c_str());
    return 1;
  }
  weights.reset();
  Bench b;
  b.model = *std::move(model);
  const KvLayout layout = b.model->KvLayoutFor(256, KvDtype::kF16);
  // Room for the longest prompt, or every decode batch's sequences.
  int64_t tokens = options.long_decode_context + 512;
  for (int n : options.prefill_lengths) tokens = std::max<int64_t>(tokens, n);
  for (int batch : options.decode_batches) {
    tokens = std::max<int64_t>(
        tokens, int64_t{batch} * (options.decode_context + 512 + 256));
  }
  const size_t pool_bytes = (tokens / 256 + 2 * 64) * layout.BlockBytes();
  auto memory = cuda::DeviceKvMemory::Create(options.device, pool_bytes);
  if (!memory.ok()) {
    std::fprintf(stderr, "bench_engine: %s\n",
                 std::string(memory.status().message()).c_str());
    return 1;
  }
  b.pool = *KvBlockPool::CreateIn(layout, *std::move(memory));
  b.logits.resize(size_t(s.vocab_size) * 64 * 2);
  const double weight_bytes = static_cast<double>(b.model->weight_bytes());
  std::printf(
      "Model %s: hidden %d, %d layers, %d heads (%d KV, head_dim %d), FFN %d, "
      "vocab %d, bf16 weights %.2f GiB (made and uploaded in %.1f s); KV "
      "cache fp16, blocks of 256\n\n",
      options.shape.c_str(), s.hidden_size, s.num_layers, s.num_heads,
      s.num_kv_heads, s.head_dim, s.intermediate_size, s.vocab_size,
      weight_bytes / (1 << 30), Seconds(made));
  std::printf("| run | time | result | against the baseline |\n");
  std::printf("|---|---|---|---|\n");
  int failures = 0;
  std::vector<std::pair<std::string, std::pair<double, Profile>>> profiles;
  // Warm-up: plans the GEMMs of the chunk's shape.
  (void)Prefill(b, options.prefill_chunk, options.prefill_chunk);
  for (int n : options.prefill_lengths) {
    const int chunk = std::min(n, options.prefill_chunk);
    Profile profile;
    auto seconds = Prefill(b, n, chunk, &profile);
    if (!seconds.ok()) {
      std::printf("| prefill %d | failed: %s | | |\n", n,
                  std::string(seconds.status().message()).c_str());
      ++failures;
      continue;
    }
    const double flops = LayerFlopsPerToken(s) * n +
                         2.0 * s.hidden_size * s.vocab_size +
                         AttentionFlops(s, n);
    std::printf(
        "| prefill %d tokens (chunks of %d) | %.3f s | %.0f tok/s, %.1f "
        "TFLOP/s (%.0f%% attention) | %.0f%% of the GEMM rate |\n",
        n, chunk, *seconds, n / *seconds, flops / *seconds / 1e12,
        100.0 * AttentionFlops(s, n) / flops, 100.0 * flops / *seconds / gemm);
    profiles.push_back({"Prefill " + std::to_string(n) +
                            ", its last chunk of " + std::to_string(chunk),
                        {0.0, std::move(profile)}});
  }
  // Reading every weight once at the device's copy bandwidth (bytes moved
  // per second: a copy's reads and writes).
  const double stream = weight_bytes / bandwidth;
  auto decode_row = [&](int batch, int context, const char* note) {
    Profile profile;
    auto step = DecodeStep(b, batch, context, &profile);
    if (!step.ok()) {
      std::printf("| decode batch %d at %d tokens | failed: %s | | |\n", batch,
                  context, std::string(step.status().message()).c_str());
      ++failures;
      return;
    }
    std::printf(
        "| decode batch %d at %d tokens%s | %.3f ms/step | %.0f tok/s | %.2fx "
        "the weight streaming time (%.3f ms) |\n",
        batch, context, note, *step * 1e3, batch / *step, *step / stream,
        stream * 1e3);
    profiles.push_back({"Decode step, batch " + std::to_string(batch) + " at " +
                            std::to_string(context) + " tokens",
                        {*step, std::move(profile)}});
  };
  for (int batch : options.decode_batches) {
    decode_row(batch, options.decode_context, "");
  }
  if (options.long_decode_context > 0) {
    decode_row(1, options.long_decode_context, " (split-KV)");
  }
  for (const auto& [what, run] : profiles) {
    PrintProfile(what.c_str(), run.first, run.second);
  }
  std::printf("\ndecode steps replayed as CUDA graphs: %lld (%d graphs)\n",
              static_cast<long long>(b.model->graph_steps()),
              b.model->graphs());
  return failures == 0 ? 0 : 1;
}

}  // namespace longctx
