// Benchmarks of Sample and TopLogprobs over a 32000-token vocabulary.
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/sampling.h"

namespace longctx::kernels {
namespace {

std::vector<float> Logits() {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  std::vector<float> logits(32000);
  for (float& f : logits) f = dist(rng);
  return logits;
}

// Args: temperature * 100, top_k, top_p * 100.
void BM_Sample(benchmark::State& state) {
  const std::vector<float> logits = Logits();
  SamplingParams params;
  params.temperature = state.range(0) / 100.0f;
  params.top_k = static_cast<int>(state.range(1));
  params.top_p = state.range(2) / 100.0f;
  uint64_t step = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(Sample(logits, params, step++));
  }
}
BENCHMARK(BM_Sample)
    ->ArgNames({"temp_x100", "top_k", "top_p_x100"})
    ->Args({0, 0, 100})    // Greedy.
    ->Args({100, 0, 100})  // Temperature only.
    ->Args({70, 40, 100})  // Top-k.
    ->Args({70, 0, 90})    // Top-p.
    ->Args({70, 40, 90})   // Both.
    ->MinTime(0.1);

void BM_TopLogprobs(benchmark::State& state) {
  const std::vector<float> logits = Logits();
  std::vector<TokenLogprob> top(state.range(0));
  for (auto _ : state) {
    TopLogprobs(logits, absl::MakeSpan(top));
    benchmark::DoNotOptimize(top.data());
  }
}
BENCHMARK(BM_TopLogprobs)->Arg(5)->Arg(20)->MinTime(0.1);

}  // namespace
}  // namespace longctx::kernels
