// Benchmarks of FlashAttention on the S model shape (8 query heads, 4 kv
// heads, head_dim 64, fp16 KV cache in blocks of 256 tokens), on the calling
// thread's OpenMP team (OMP_NUM_THREADS). GFLOPS counts 4 * head_dim flops
// per (query head, visible key) pair: QK^T and PV, multiply-adds as 2.
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/attention.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"

namespace longctx::kernels {
namespace {

constexpr int kHeads = 8;
constexpr int kKvHeads = 4;
constexpr int kHeadDim = 64;
constexpr int kBlock = 256;

// KvFixture holds n_kv tokens of random fp16 K and V, on transparent huge
// pages as the engine's KV pool is (KvBlockPool).
struct KvFixture {
  explicit KvFixture(int64_t n_kv) {
    const int64_t blocks = (n_kv + kBlock - 1) / kBlock;
    const size_t block_elems =
        static_cast<size_t>(kKvHeads) * kBlock * kHeadDim;
    const size_t elems = 2 * blocks * block_elems;
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = (elems * sizeof(uint16_t) + kHuge - 1) / kHuge * kHuge;
    storage.reset(static_cast<uint16_t*>(std::aligned_alloc(kHuge, bytes)));
    madvise(storage.get(), bytes, MADV_HUGEPAGE);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (size_t i = 0; i < elems; ++i) storage.get()[i] = F32ToF16(dist(rng));
    for (int64_t b = 0; b < blocks; ++b) {
      k.push_back(storage.get() + 2 * b * block_elems);
      v.push_back(storage.get() + (2 * b + 1) * block_elems);
    }
    view.k_blocks = k.data();
    view.v_blocks = v.data();
    view.dtype = DType::kF16;
    view.block_size = kBlock;
    view.num_kv_heads = kKvHeads;
    view.head_dim = kHeadDim;
    view.num_tokens = n_kv;
  }
  struct Free {
    void operator()(uint16_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint16_t, Free> storage;
  std::vector<const void*> k, v;
  PagedKv view;
};

// Args: n_q, n_kv, isa. Queries are the last n_q positions of the keys.
// isa kAvx512Bf16 runs with compute kBf16 (bf16 products); the others fp32.
void BM_CausalAttention(benchmark::State& state) {
  const int64_t n_q = state.range(0);
  const int64_t n_kv = state.range(1);
  SetMaxCpuIsa(static_cast<CpuIsa>(state.range(2)));
  const KvFixture kv(n_kv);
  std::vector<float> q(n_q * kHeads * kHeadDim), o(q.size()), lse(n_q * kHeads);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& f : q) f = dist(rng);
  AttentionParams params;
  params.num_heads = kHeads;
  params.q_start_pos = n_kv - n_q;
  if (state.range(2) == static_cast<int>(CpuIsa::kAvx512Bf16)) {
    params.compute = DType::kBf16;
  }
  for (auto _ : state) {
    const absl::Status s =
        FlashAttention(q.data(), n_q, kHeads * kHeadDim, kv.view, params,
                       o.data(), kHeads * kHeadDim, lse.data());
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(o.data());
  }
  // Query i (absolute position n_kv - n_q + i) sees n_kv - n_q + i + 1 keys.
  const double pairs = static_cast<double>(n_q) * (n_kv - n_q) +
                       static_cast<double>(n_q) * (n_q + 1) / 2;
  state.counters["GFLOPS"] =
      benchmark::Counter(4.0 * kHeadDim * kHeads * pairs * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(CpuIsaName(ActiveCpuIsa()));
  SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
}

constexpr int kAvx512 = static_cast<int>(CpuIsa::kAvx512);
constexpr int kBf16 = static_cast<int>(CpuIsa::kAvx512Bf16);
constexpr int kScalar = static_cast<int>(CpuIsa::kScalar);

// Prefill of the whole prompt.
BENCHMARK(BM_CausalAttention)
    ->Args({2048, 2048, kAvx512})
    ->Args({16384, 16384, kAvx512})
    ->Args({2048, 2048, kBf16})
    ->Args({16384, 16384, kBf16})
    ->Args({2048, 2048, kScalar})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// A 512-token prefill chunk at the end of a long context, and decode.
BENCHMARK(BM_CausalAttention)
    ->Args({512, 16384, kAvx512})
    ->Args({512, 16384, kBf16})
    ->Args({1, 16384, kAvx512})
    ->Args({1, 131072, kAvx512})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace longctx::kernels
