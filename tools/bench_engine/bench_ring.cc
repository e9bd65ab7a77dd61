// bench_ring: prefill of one long prompt by one rank against a group of P ranks
// (separate processes, Gloo over loopback, ring attention), on a random model
// of a benchmark shape. Reports the speedup, the KV bytes each rank sends per
// layer, and how much of the communication was hidden behind compute: the
// time ranks spent blocked on peers against the time the same bytes take on
// this machine's link, measured in the same run. With --decode_context, the
// same for one decode step at a long context, with what the group is up
// against there on this machine: the step's part that does not split and how
// the read bandwidth scales from one rank to P.
//
//   bazel run -c opt //tools/bench_engine:bench_ring -- --ranks=2 --threads=1
//   bazel run -c opt //tools/bench_engine:bench_ring -- --ranks=2 --threads=1
//       --decode_context=131072 --repeats=8       (one command line)
#include <immintrin.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/kv_block_pool.h"
#include "gloo/rendezvous/file_store.h"
#include "model/llama_model.h"
#include "parallel/block_placer.h"
#include "parallel/gloo_communicator.h"
#include "parallel/ring_attention.h"
#include "tools/bench_engine/bench_models.h"

ABSL_FLAG(std::string, shape, "S", "Model shape: S or M.");
ABSL_FLAG(int, tokens, 16384, "Prompt length.");
ABSL_FLAG(int, ranks, 2, "Ranks of the group (processes).");
ABSL_FLAG(int, threads, 1, "Compute threads per rank.");
ABSL_FLAG(int, block_size, 256, "Tokens per KV block.");
ABSL_FLAG(int, repeats, 2,
          "Timed prefills or decode steps (the best counts) after a warm-up.");
ABSL_FLAG(std::string, compute_precision, "fp32",
          "GEMM and attention precision: fp32 or bf16.");
ABSL_FLAG(std::string, weight_dtype, "f32", "Weights: f32 or bf16.");
ABSL_FLAG(std::string, kv_dtype, "f16", "KV cache: f16, bf16 or f32.");
ABSL_FLAG(int, decode_context, 0,
          "When > 0: time a batch-1 decode step at this context instead of a "
          "prefill of --tokens (the group splits the context's blocks, and "
          "passes the query: pass-Q).");

namespace longctx {
namespace {

struct Result {
  double seconds = 0;           // Best prefill time.
  double kv_bytes = 0;          // Of the whole context, all ranks.
  double wait_seconds = 0;      // Rank 0, blocked on peers (per prefill).
  double ring_bytes_layer = 0;  // Rank 0's KV bytes sent per layer.
  double link_seconds = 0;      // The same bytes as plain ring transfers.
};

KvLayout Layout(const LlamaShape& shape, int block) {
  KvLayout layout;
  layout.num_layers = shape.num_layers;
  layout.num_kv_heads = shape.num_kv_heads;
  layout.head_dim = shape.head_dim;
  layout.block_size = block;
  auto dtype = ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!dtype.ok()) {
    std::fprintf(stderr, "%s\n", dtype.status().ToString().c_str());
    std::exit(2);
  }
  layout.dtype = *dtype;
  return layout;
}

std::unique_ptr<LlamaModel> NewModel(const BenchModel& bench, int threads) {
  LlamaModelOptions options;
  options.threads = threads;
  auto precision =
      kernels::ParseComputePrecision(absl::GetFlag(FLAGS_compute_precision));
  if (!precision.ok()) {
    std::fprintf(stderr, "%s\n", precision.status().ToString().c_str());
    std::exit(2);
  }
  options.precision = *precision;
  auto model = LlamaModel::Create(bench.shape, bench.weights, options);
  if (!model.ok()) {
    std::fprintf(stderr, "model: %s\n", model.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(model);
}

std::vector<int32_t> Prompt(int n, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[i] = (i * 7919 + 13) % vocab;
  return ids;
}

// One rank: prefill as one plan; returns rank 0's result.
Result RunRank(int rank, int P, const std::string& store_dir) {
  const int context = absl::GetFlag(FLAGS_decode_context);
  // Tokens the KV cache holds once the step has run.
  const int n = context > 0 ? context + 1 : absl::GetFlag(FLAGS_tokens);
  const int block = absl::GetFlag(FLAGS_block_size);
  auto bench = MakeModel(absl::GetFlag(FLAGS_shape),
                         absl::GetFlag(FLAGS_weight_dtype) == "bf16"
                             ? kernels::DType::kBf16
                             : kernels::DType::kF32);
  auto model = NewModel(*bench, absl::GetFlag(FLAGS_threads));
  const KvLayout layout = Layout(bench->shape, block);
  const int nb = (n + block - 1) / block;
  // Prefaulted, as a worker's KV cache is (--kv_cache_prefault).
  auto pool = KvBlockPool::Create(layout, layout.BlockBytes() * (nb + 1),
                                  /*prefault=*/true);
  gloo::rendezvous::FileStore store(store_dir);
  GlooOptions gloo;
  gloo.rank = rank;
  gloo.size = P;
  gloo.timeout = absl::Minutes(10);
  auto comm = GlooCommunicator::Connect(store, gloo);
  if (!pool.ok() || !comm.ok()) {
    std::fprintf(
        stderr, "rank %d: %s\n", rank,
        (pool.ok() ? comm.status() : pool.status()).ToString().c_str());
    std::exit(1);
  }
  RingStep ring(model.get(), pool->get(), comm->get());
  Result result;
  result.seconds = 1e30;
  result.kv_bytes = static_cast<double>(layout.BlockBytes()) * nb;
  const int runs = 1 + absl::GetFlag(FLAGS_repeats);
  for (int run = 0; run < runs; ++run) {
    StepPlan plan;
    if (rank == 0) {
      BlockPlacer placer(P, nb + 1);
      auto places = placer.PlaceBlocks(nb);
      PlanSpan span;
      if (context > 0) {
        // One token after `context` cached ones (their values do not change
        // the work).
        span.start = context;
        span.tokens = {42};
      } else {
        span.tokens = Prompt(n, bench->shape.vocab_size);
      }
      span.want_logits = true;
      for (const auto& p : *places) {
        span.owner.push_back(p.rank);
        span.local.push_back(p.local);
      }
      plan.step = static_cast<uint64_t>(run + 1);
      plan.spans.push_back(std::move(span));
    }
    // Every rank starts together.
    if (!(*comm)->Barrier(1000 + run).ok()) std::exit(1);
    const absl::Time start = absl::Now();
    const double wait_before = ring.stats().wait_seconds;
    const int64_t bytes_before = ring.stats().ring_bytes_sent;
    absl::Status status;
    std::vector<float> logits(static_cast<size_t>(bench->shape.vocab_size));
    if (rank == 0) {
      status = SendStepPlan(**comm, plan);
      if (status.ok()) status = ring.Run(plan, logits.data());
    } else {
      auto received = RecvStepPlan(**comm, absl::Minutes(10));
      status = received.ok() ? ring.Run(*received, nullptr) : received.status();
    }
    if (!status.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", rank, status.ToString().c_str());
      std::exit(1);
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    if (run > 0 && seconds < result.seconds) {
      result.seconds = seconds;
      result.wait_seconds = ring.stats().wait_seconds - wait_before;
      result.ring_bytes_layer =
          static_cast<double>(ring.stats().ring_bytes_sent - bytes_before) /
          bench->shape.num_layers;
    }
  }
  // The link: rank 0's per-layer bytes passed around the ring, no compute.
  if (P > 1) {
    const size_t bytes = static_cast<size_t>(result.ring_bytes_layer);
    std::vector<uint8_t> send(bytes / static_cast<size_t>(P - 1) + 1),
        recv(send.size());
    (*comm)->Barrier(9999).IgnoreError();
    const absl::Time start = absl::Now();
    for (int hop = 0; hop < P - 1; ++hop) {
      auto s = (*comm)->Isend(send.data(), send.size(), (rank + 1) % P, 5000);
      auto r =
          (*comm)->Irecv(recv.data(), recv.size(), (rank + P - 1) % P, 5000);
      if (!s.ok() || !r.ok() || !(*s)->Wait().ok() || !(*r)->Wait().ok()) {
        std::exit(1);
      }
    }
    result.link_seconds =
        absl::ToDoubleSeconds(absl::Now() - start) * bench->shape.num_layers;
  }
  return result;
}

// The sum of `n` floats (a multiple of 64), one thread.
__attribute__((target("avx512f"))) float SumOnce(const float* data, size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(),
         acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  for (size_t i = 0; i + 64 <= n; i += 64) {
    acc0 = _mm512_add_ps(acc0, _mm512_loadu_ps(data + i));
    acc1 = _mm512_add_ps(acc1, _mm512_loadu_ps(data + i + 16));
    acc2 = _mm512_add_ps(acc2, _mm512_loadu_ps(data + i + 32));
    acc3 = _mm512_add_ps(acc3, _mm512_loadu_ps(data + i + 48));
  }
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

// Seconds for `ranks` processes at once, each reading its share of `bytes`
// (on transparent huge pages, as the KV pool is) with one thread, best of 6
// passes each, the slowest process counting: how this machine's read
// bandwidth scales to the ranks that split a long context's KV (the passes of
// the processes overlap but are not aligned). 0 on failure.
double ConcurrentReadSeconds(int ranks, double bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t share =
      (static_cast<size_t>(bytes / ranks) + kHuge - 1) / kHuge * kHuge;
  int go[2], done[2];
  if (pipe(go) != 0 || pipe(done) != 0) return 0;
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      close(go[1]);
      close(done[0]);
      float* data = static_cast<float*>(std::aligned_alloc(kHuge, share));
      if (data == nullptr) _exit(1);
      madvise(data, share, MADV_HUGEPAGE);
      std::fill(data, data + share / sizeof(float), 1.0f);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(1);
      double best = 1e30;
      volatile float sink = 0;
      for (int pass = 0; pass < 6; ++pass) {
        const absl::Time start = absl::Now();
        sink = SumOnce(data, share / sizeof(float));
        best = std::min(best, absl::ToDoubleSeconds(absl::Now() - start));
      }
      (void)sink;
      if (write(done[1], &best, sizeof(best)) != sizeof(best)) _exit(1);
      _exit(0);
    }
    pids.push_back(pid);
  }
  close(go[0]);
  close(done[1]);
  absl::SleepFor(absl::Seconds(1));  // Every process has filled its share.
  const std::string start(static_cast<size_t>(ranks), 'g');
  double slowest = 0;
  if (write(go[1], start.data(), start.size()) ==
      static_cast<ssize_t>(start.size())) {
    for (int r = 0; r < ranks; ++r) {
      double seconds = 0;
      if (read(done[0], &seconds, sizeof(seconds)) != sizeof(seconds)) {
        slowest = 0;
        break;
      }
      slowest = std::max(slowest, seconds);
    }
  }
  close(go[1]);
  close(done[0]);
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  return slowest;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using longctx::Result;
  const int P = absl::GetFlag(FLAGS_ranks);
  // Each configuration runs in its own processes, one per rank, so the ranks
  // share nothing but the link; rank 0 reports through a pipe.
  auto run_group = [](int ranks) {
    char dir[] = "/tmp/bench_ring_XXXXXX";
    if (mkdtemp(dir) == nullptr) std::exit(1);
    int fds[2];
    if (pipe(fds) != 0) std::exit(1);
    std::vector<pid_t> pids;
    for (int rank = 0; rank < ranks; ++rank) {
      pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        Result r = longctx::RunRank(rank, ranks, dir);
        if (rank == 0 && write(fds[1], &r, sizeof(r)) != sizeof(r)) _exit(1);
        _exit(0);
      }
      pids.push_back(pid);
    }
    close(fds[1]);
    Result result;
    if (read(fds[0], &result, sizeof(result)) != sizeof(result)) {
      std::fprintf(stderr, "a rank failed\n");
      std::exit(1);
    }
    for (pid_t pid : pids) waitpid(pid, nullptr, 0);
    close(fds[0]);
    return result;
  };
  const Result one = run_group(1);
  const Result group = run_group(P);
  const double hidden =
      group.link_seconds > 0
          ? std::max(0.0, 1.0 - group.wait_seconds / group.link_seconds)
          : 1.0;
  if (absl::GetFlag(FLAGS_decode_context) > 0) {
    absl::PrintF(
        "shape %s (%s weights, %s compute, %s KV), batch-1 decode step at "
        "context %d, blocks of %d, %d thread(s) per rank\n"
        "P=1: %.2f ms   P=%d: %.2f ms   ratio %.2f (target <= 0.6 at P=2); "
        "rank 0 waited for its peers %.2f ms of it\n",
        absl::GetFlag(FLAGS_shape), absl::GetFlag(FLAGS_weight_dtype),
        absl::GetFlag(FLAGS_compute_precision), absl::GetFlag(FLAGS_kv_dtype),
        absl::GetFlag(FLAGS_decode_context), absl::GetFlag(FLAGS_block_size),
        absl::GetFlag(FLAGS_threads), one.seconds * 1e3, P, group.seconds * 1e3,
        group.seconds / one.seconds, group.wait_seconds * 1e3);
    // What the group is up against on this machine, in the same run: the
    // step's part that does not split (rank 0's weights: one rank's step at
    // a context of one block), what a perfect split of the rest would give,
    // and how the read bandwidth scales from one rank to P reading their
    // shares of the KV at once (a step is not all reading: attention's
    // arithmetic splits over the ranks' cores too).
    const int context = absl::GetFlag(FLAGS_decode_context);
    absl::SetFlag(&FLAGS_decode_context, absl::GetFlag(FLAGS_block_size));
    const Result small = run_group(1);
    absl::SetFlag(&FLAGS_decode_context, context);
    const double perfect = small.seconds + (one.seconds - small.seconds) / P;
    absl::PrintF(
        "the step's unsplit part (P=1 at a context of %d): %.2f ms; a perfect "
        "split of the rest: %.2f ms, ratio %.2f\n",
        absl::GetFlag(FLAGS_block_size), small.seconds * 1e3, perfect * 1e3,
        perfect / one.seconds);
    const double read_one = longctx::ConcurrentReadSeconds(1, one.kv_bytes);
    const double read_group = longctx::ConcurrentReadSeconds(P, one.kv_bytes);
    if (read_one > 0 && read_group > 0) {
      absl::PrintF(
          "reading the %.0f MiB of KV with no arithmetic: one rank %.2f ms, "
          "%d ranks at once (each its share) %.2f ms (%.2fx)\n",
          one.kv_bytes / (1 << 20), read_one * 1e3, P, read_group * 1e3,
          read_one / read_group);
    }
    return 0;
  }
  absl::PrintF(
      "shape %s, %d tokens, blocks of %d, %d thread(s) per rank\n"
      "P=1: %.2f s   P=%d: %.2f s   speedup %.2fx (target >= 1.8x at P=2)\n"
      "ring: %.1f MiB sent per layer by rank 0; rank 0 blocked on peers "
      "%.3f s against %.3f s for the same bytes on the bare link: %.0f%% of "
      "communication hidden behind compute\n",
      absl::GetFlag(FLAGS_shape), absl::GetFlag(FLAGS_tokens),
      absl::GetFlag(FLAGS_block_size), absl::GetFlag(FLAGS_threads),
      one.seconds, P, group.seconds, one.seconds / group.seconds,
      group.ring_bytes_layer / (1 << 20), group.wait_seconds,
      group.link_seconds, 100 * hidden);
  return 0;
}
