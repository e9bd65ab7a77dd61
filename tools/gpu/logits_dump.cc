// logits_dump: the logits a worker's model computes for a token sequence, on
// the CPU or a GPU, written as raw float32 rows for tools/gpu/
// compare_transformers.py (which checks them against Hugging Face
// transformers on the same model folder).
//
//   logits_dump --model=DIR --device=cuda --compute_precision=bf16
//       --num_tokens=40 --prefill=24 --out=/tmp/gpu_bf16.f32
//
// The first --prefill tokens run as one prompt (one logits row: its last
// token's), then every further token as one decode step (one row each):
// rows for positions prefill-1 .. num_tokens-1, each vocab_size floats. The
// token ids (seeded, in [0, 256): bytes of the byte tokenizer) go to
// --out.tokens, one line, comma-separated.
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "kernels/gemm.h"
#include "model/model_backend.h"
#include "model/model_source.h"

ABSL_FLAG(std::string, model, "", "Model folder.");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, compute_precision, "fp32", "fp32 or bf16.");
ABSL_FLAG(int, num_tokens, 40, "Tokens in the sequence.");
ABSL_FLAG(int, prefill, 24, "Tokens of the first (prompt) step.");
ABSL_FLAG(int, block_size, 16, "Tokens per KV block.");
ABSL_FLAG(uint32_t, seed, 1, "Seed of the token ids.");
ABSL_FLAG(std::string, out, "", "Output file of float32 rows.");

namespace longctx {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "logits_dump: %s\n", status.ToString().c_str());
  return 1;
}

int Run() {
  const int n = absl::GetFlag(FLAGS_num_tokens);
  const int prefill = absl::GetFlag(FLAGS_prefill);
  if (n < 1 || prefill < 1 || prefill > n || absl::GetFlag(FLAGS_out).empty()) {
    return Fail(absl::InvalidArgumentError(
        "need 1 <= --prefill <= --num_tokens and --out"));
  }
  auto source = OpenModelSource(absl::GetFlag(FLAGS_model));
  if (!source.ok()) return Fail(source.status());
  DeviceOptions options;
  auto device = ParseDeviceFlag(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail(device.status());
  options.device = *device;
  auto precision =
      kernels::ParseComputePrecision(absl::GetFlag(FLAGS_compute_precision));
  if (!precision.ok()) return Fail(precision.status());
  options.precision = *precision;
  options.block_size = absl::GetFlag(FLAGS_block_size);
  options.kv_cache_prefault = false;
  options.cuda_graphs = true;
  const KvLayout probe =
      KvLayoutFor(source->shape, options.block_size, options.kv_dtype);
  options.kv_cache_bytes =
      probe.BlockBytes() * static_cast<size_t>(n / options.block_size + 2);
  auto loaded = LoadModelOnDevice(*source, options, nullptr);
  if (!loaded.ok()) return Fail(loaded.status());
  std::mt19937 rng(absl::GetFlag(FLAGS_seed));
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 256);
  std::vector<int> blocks;
  for (int i = 0; i < (n + options.block_size - 1) / options.block_size; ++i) {
    blocks.push_back(*loaded->pool->Allocate());
  }
  const int vocab = loaded->model->vocab_size();
  std::vector<float> rows;
  std::vector<float> logits(vocab);
  for (int start = 0; start < n;) {
    const int count = start == 0 ? prefill : 1;
    SeqSpan span;
    span.start = start;
    span.tokens = absl::MakeConstSpan(tokens).subspan(start, count);
    span.blocks = blocks;
    span.want_logits = true;
    absl::Status status =
        loaded->model->Forward({span}, *loaded->pool, logits.data());
    if (!status.ok()) return Fail(status);
    rows.insert(rows.end(), logits.begin(), logits.end());
    start += count;
  }
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::binary);
  out.write(reinterpret_cast<const char*>(rows.data()),
            static_cast<std::streamsize>(rows.size() * sizeof(float)));
  std::ofstream ids(absl::GetFlag(FLAGS_out) + ".tokens");
  ids << absl::StrJoin(tokens, ",") << "\n";
  if (!out || !ids) return Fail(absl::InternalError("cannot write --out"));
  std::printf("logits_dump: %s on %s: %zu rows of %d\n",
              absl::GetFlag(FLAGS_model).c_str(), loaded->description.c_str(),
              rows.size() / vocab, vocab);
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return longctx::Run();
}
