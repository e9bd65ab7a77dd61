// The GPU side of bench_engine (--device=cuda): the model of shape L on one
// GPU against that GPU's own ceilings, measured in the same run.
#ifndef LONGCTX_TOOLS_BENCH_ENGINE_GPU_BENCH_H_
#define LONGCTX_TOOLS_BENCH_ENGINE_GPU_BENCH_H_

#include <string>
#include <vector>

namespace longctx {

struct GpuBenchOptions {
  int device = 0;
  std::string shape = "L";
  std::vector<int> prefill_lengths = {8192, 32768};
  int prefill_chunk = 8192;  // Prompt tokens per forward step.
  std::vector<int> decode_batches = {1, 64};
  int decode_context = 2048;        // Tokens before each decoded one.
  int long_decode_context = 32768;  // Batch-1 decode at long context too.
};

// RunGpuBenchmarks prints a Markdown report on stdout; returns a process exit
// status (non-zero when no GPU is usable or a step fails).
int RunGpuBenchmarks(const GpuBenchOptions& options);

}  // namespace longctx

#endif  // LONGCTX_TOOLS_BENCH_ENGINE_GPU_BENCH_H_
