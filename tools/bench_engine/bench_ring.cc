// bench_ring: prefill of one long prompt by one rank against a group of P ranks
// (separate processes, Gloo over loopback, ring attention), on a random model
// of a benchmark shape. Reports the speedup, the KV bytes each rank sends per
// layer, and how much of the communication was hidden behind compute: the
// time ranks spent blocked on peers against the time the same bytes take on
// this machine's link, measured in the same run. With --decode_context, the
// same for one decode step at a long context.
//
//   bazel run -c opt //tools/bench_engine:bench_ring -- --ranks=2 --threads=1
//   bazel run -c opt //tools/bench_engine:bench_ring -- --ranks=2 --threads=1
//       --decode_context=131072 --repeats=8       (one command line)
#include <sys/wait.h>
#include <unistd.h>

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
        "P=1: %.2f ms   P=%d: %.2f ms   ratio %.2f (target <= 0.6 at P=2)\n",
        absl::GetFlag(FLAGS_shape), absl::GetFlag(FLAGS_weight_dtype),
        absl::GetFlag(FLAGS_compute_precision), absl::GetFlag(FLAGS_kv_dtype),
        absl::GetFlag(FLAGS_decode_context), absl::GetFlag(FLAGS_block_size),
        absl::GetFlag(FLAGS_threads), one.seconds * 1e3, P, group.seconds * 1e3,
        group.seconds / one.seconds);
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
