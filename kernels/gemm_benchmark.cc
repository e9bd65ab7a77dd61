// Benchmarks of Gemm::Run on the linear layers of the S and M models (hidden
// 512 / 1024, FFN 1536 / 2816, vocabulary 32000), for decode (M = 1, 16) and
// prefill (M = 2048) batches, plus the square 2048^3 product that measures
// the machine's GEMM rate, with fp32, bf16 or int8 weights. Runs on
// OMP_NUM_THREADS threads. GFLOPS counts 2 * M * N * K; GB/s the packed
// weight's bytes per call (what decode streams).
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"

namespace longctx::kernels {
namespace {

// Args: m, n, k, type (0 = fp32, 1 = bf16, 2 = int8 weights).
void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool int8 = state.range(3) == 2;
  const auto precision = int8 ? ComputePrecision::kFp32
                              : static_cast<ComputePrecision>(state.range(3));
  if (precision == ComputePrecision::kBf16 && !Bf16GemmSupported()) {
    state.SkipWithError("no native bf16 on this CPU");
    return;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> w(n * k), x(m * k), y(m * n);
  for (float& f : w) f = dist(rng);
  for (float& f : x) f = dist(rng);
  absl::StatusOr<PackedWeight> packed =
      PackedWeight::Create(w.data(), DType::kF32, n, k, precision,
                           int8 ? WeightDtype::kInt8 : WeightDtype::kAuto);
  if (!packed.ok()) {
    state.SkipWithError(packed.status().ToString().c_str());
    return;
  }
  Gemm gemm;
  // Creates the primitive and touches the buffers outside the timed loop.
  if (!gemm.Run(x.data(), m, k, *packed, nullptr, y.data(), n).ok()) {
    state.SkipWithError("Gemm::Run failed");
    return;
  }
  for (auto _ : state) {
    const absl::Status s =
        gemm.Run(x.data(), m, k, *packed, nullptr, y.data(), n);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * m * n * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(packed->size_bytes() * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(int8 ? "int8" : ComputePrecisionName(precision));
}

void ModelShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "k", "type"});
  for (int precision : {0, 1, 2}) {
    b->Args({2048, 2048, 2048, precision});
    // {n, k}: attention projection, FFN up (and gate), FFN down, LM head.
    const int64_t shapes[][2] = {{512, 512},   {1536, 512},  {512, 1536},
                                 {32000, 512}, {1024, 1024}, {2816, 1024},
                                 {1024, 2816}, {32000, 1024}};
    for (const auto& shape : shapes) {
      for (int64_t m : {1, 4, 16, 2048}) {
        if (shape[0] == 32000 && m == 2048) continue;  // Logits: last token.
        b->Args({m, shape[0], shape[1], precision});
      }
    }
  }
}

BENCHMARK(BM_Gemm)->Apply(ModelShapes)->MinTime(0.2)->UseRealTime();

// Padded rows, fp32: the S model's down projection reading the activation
// from a fused [m, 2 * 1536] gate|up buffer and writing into a wider buffer.
// Args: m, x_stride, y_stride.
void BM_GemmPaddedRows(benchmark::State& state) {
  const int64_t m = state.range(0), n = 512, k = 1536;
  const int64_t x_stride = state.range(1), y_stride = state.range(2);
  std::vector<float> w(n * k, 0.01f), x(m * x_stride, 0.5f), y(m * y_stride);
  absl::StatusOr<PackedWeight> packed = PackedWeight::Create(
      w.data(), DType::kF32, n, k, ComputePrecision::kFp32);
  Gemm gemm;
  if (!packed.ok() ||
      !gemm.Run(x.data(), m, x_stride, *packed, nullptr, y.data(), y_stride)
           .ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    const absl::Status s =
        gemm.Run(x.data(), m, x_stride, *packed, nullptr, y.data(), y_stride);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * m * n * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GemmPaddedRows)
    ->ArgNames({"m", "x_stride", "y_stride"})
    ->ArgsProduct({{1, 2048}, {1536, 3072}, {512, 576}})
    ->MinTime(0.2)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
