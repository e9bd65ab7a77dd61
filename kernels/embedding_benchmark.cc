// Benchmark of EmbeddingLookup from a bf16 table of the M model (32000 x
// 1024).
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/dtype.h"
#include "kernels/embedding.h"

namespace longctx::kernels {
namespace {

// Args: tokens, dtype.
void BM_EmbeddingLookup(benchmark::State& state) {
  const int64_t n = state.range(0), vocab = 32000, dim = 1024;
  const auto dtype = static_cast<DType>(state.range(1));
  std::vector<uint8_t> table(vocab * dim * DTypeSize(dtype), 0x3c);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i)
    ids[i] = static_cast<int32_t>(i * 7919 % vocab);
  std::vector<float> out(n * dim);
  for (auto _ : state) {
    const absl::Status s = EmbeddingLookup(table.data(), dtype, vocab, dim,
                                           ids.data(), n, out.data(), dim);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(DTypeName(dtype));
}
BENCHMARK(BM_EmbeddingLookup)
    ->ArgsProduct({{1, 2048},
                   {static_cast<int>(DType::kF32),
                    static_cast<int>(DType::kF16),
                    static_cast<int>(DType::kBf16)}})
    ->MinTime(0.1)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
