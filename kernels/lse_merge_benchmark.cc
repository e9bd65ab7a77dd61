// Benchmark of MergeAttention for the S model (8 heads, head_dim 64): a
// decode step's partials and a 2048-token ring-attention chunk.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/lse_merge.h"

namespace longctx::kernels {
namespace {

// Args: query tokens.
void BM_MergeAttention(benchmark::State& state) {
  const int64_t n_q = state.range(0);
  const int heads = 8, d = 64;
  std::vector<float> o_a(n_q * heads * d, 0.5f), o_b(o_a.size(), 0.25f),
      lse_a(n_q * heads, 1.0f), lse_b(n_q * heads, 2.0f);
  for (auto _ : state) {
    MergeAttention(o_a.data(), heads * d, lse_a.data(), o_b.data(), heads * d,
                   lse_b.data(), n_q, heads, d);
    benchmark::DoNotOptimize(o_a.data());
  }
  state.SetItemsProcessed(state.iterations() * n_q);
}
BENCHMARK(BM_MergeAttention)->Arg(1)->Arg(2048)->MinTime(0.1)->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
