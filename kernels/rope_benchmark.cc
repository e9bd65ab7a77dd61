// Benchmark of ApplyRope on Q and K of the S model (8 query heads, 4 kv
// heads, head_dim 64) at positions deep in a long context.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/rope.h"

namespace longctx::kernels {
namespace {

// Args: tokens.
void BM_ApplyRope(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int head_dim = 64, q_heads = 8, k_heads = 4;
  RopeParams params;
  params.head_dim = head_dim;
  params.theta = 500000.0;
  params.use_llama3_scaling = true;
  std::vector<float> inv_freq(head_dim / 2);
  if (!ComputeRopeInvFreq(params, inv_freq.data()).ok()) {
    state.SkipWithError("ComputeRopeInvFreq failed");
    return;
  }
  std::vector<int32_t> positions(n);
  for (int64_t i = 0; i < n; ++i) positions[i] = 100000 + i;
  std::vector<float> q(n * q_heads * head_dim, 0.5f),
      k(n * k_heads * head_dim, 0.5f);
  for (auto _ : state) {
    ApplyRope(inv_freq.data(), head_dim, positions.data(), n, q.data(),
              q_heads * head_dim, q_heads, k.data(), k_heads * head_dim,
              k_heads);
    benchmark::DoNotOptimize(q.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ApplyRope)
    ->Arg(1)
    ->Arg(16)
    ->Arg(2048)
    ->MinTime(0.1)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
