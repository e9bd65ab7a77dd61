// Benchmarks of the bulk F16 / BF16 <-> F32 conversions (1M elements).
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"

namespace longctx::kernels {
namespace {

constexpr int64_t kCount = 1 << 20;

template <void (*Convert)(const uint16_t*, float*, int64_t)>
void BM_ToF32(benchmark::State& state) {
  SetMaxCpuIsa(static_cast<CpuIsa>(state.range(0)));
  std::vector<uint16_t> src(kCount, 0x3c00);
  std::vector<float> dst(kCount);
  for (auto _ : state) {
    Convert(src.data(), dst.data(), kCount);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetItemsProcessed(state.iterations() * kCount);
  state.SetLabel(CpuIsaName(ActiveCpuIsa()));
  SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
}

template <void (*Convert)(const float*, uint16_t*, int64_t)>
void BM_FromF32(benchmark::State& state) {
  SetMaxCpuIsa(static_cast<CpuIsa>(state.range(0)));
  std::vector<float> src(kCount, 1.2345f);
  std::vector<uint16_t> dst(kCount);
  for (auto _ : state) {
    Convert(src.data(), dst.data(), kCount);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetItemsProcessed(state.iterations() * kCount);
  state.SetLabel(CpuIsaName(ActiveCpuIsa()));
  SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
}

BENCHMARK_TEMPLATE(BM_ToF32, ConvertF16ToF32)->DenseRange(0, 1)->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_ToF32, ConvertBf16ToF32)->DenseRange(0, 1)->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_FromF32, ConvertF32ToF16)->DenseRange(0, 1)->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_FromF32, ConvertF32ToBf16)
    ->DenseRange(0, 1)
    ->MinTime(0.1);

}  // namespace
}  // namespace longctx::kernels
