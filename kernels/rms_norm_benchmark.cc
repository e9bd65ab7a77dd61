// Benchmarks of RmsNorm and AddRmsNorm for the S and M hidden sizes, for a
// decode batch and a prefill chunk, on OMP_NUM_THREADS threads.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/rms_norm.h"

namespace longctx::kernels {
namespace {

// Args: rows, dim.
void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = state.range(1);
  std::vector<float> x(rows * dim, 0.5f), w(dim, 1.0f), y(rows * dim);
  for (auto _ : state) {
    RmsNorm(x.data(), dim, w.data(), rows, dim, 1e-5f, y.data(), dim);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * rows * dim * 8);
}
BENCHMARK(BM_RmsNorm)
    ->ArgsProduct({{1, 16, 2048}, {512, 1024}})
    ->MinTime(0.1)
    ->UseRealTime();

void BM_AddRmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = state.range(1);
  std::vector<float> residual(rows * dim, 0.5f), delta(rows * dim, 1e-3f),
      w(dim, 1.0f), y(rows * dim);
  for (auto _ : state) {
    AddRmsNorm(residual.data(), dim, delta.data(), dim, w.data(), rows, dim,
               1e-5f, y.data(), dim);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * rows * dim * 16);
}
BENCHMARK(BM_AddRmsNorm)
    ->ArgsProduct({{1, 2048}, {512, 1024}})
    ->MinTime(0.1)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
