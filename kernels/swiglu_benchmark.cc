// Benchmark of SwiGluFused for the S and M FFN sizes.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/swiglu.h"

namespace longctx::kernels {
namespace {

// Args: rows, FFN dim.
void BM_SwiGluFused(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = state.range(1);
  std::vector<float> gate_up(rows * 2 * dim, 0.25f), out(rows * dim);
  for (auto _ : state) {
    SwiGluFused(gate_up.data(), rows, dim, out.data(), dim);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * dim);
}
BENCHMARK(BM_SwiGluFused)
    ->ArgsProduct({{1, 16, 2048}, {1536, 2816}})
    ->MinTime(0.1)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
