// make_tiny_model writes a seeded random Llama model folder (config.json,
// safetensors, byte tokenizer) that longctx serves like a real checkpoint.
//
//   make_tiny_model --out=/tmp/tiny                  # the "tiny" preset
//   make_tiny_model --out=/tmp/s --preset=S --dtype=bf16 --shards=2
//
// Size flags left unset take the preset's values.
#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "tools/make_tiny_model/tiny_model.h"

ABSL_FLAG(std::string, out, "", "Folder to write the model into (created).");
ABSL_FLAG(std::string, preset, "tiny",
          "tiny (hidden 64, 2 layers, vocab 258), S (hidden 512, 8 layers, "
          "vocab 32000) or M (hidden 1024, 12 layers, vocab 32000).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the weights.");
ABSL_FLAG(std::optional<int>, hidden_size, std::nullopt,
          "Model width. Default: the preset's.");
ABSL_FLAG(std::optional<int>, intermediate_size, std::nullopt,
          "SwiGLU width. Default: the preset's.");
ABSL_FLAG(std::optional<int>, num_layers, std::nullopt,
          "Decoder layers. Default: the preset's.");
ABSL_FLAG(std::optional<int>, num_heads, std::nullopt,
          "Attention heads. Default: the preset's.");
ABSL_FLAG(std::optional<int>, num_kv_heads, std::nullopt,
          "Key/value heads (divides --num_heads). Default: the preset's.");
ABSL_FLAG(std::optional<int>, vocab_size, std::nullopt,
          "Vocabulary size, at least 258 (256 bytes + bos + eos). Default: the "
          "preset's.");
ABSL_FLAG(std::optional<int>, max_position_embeddings, std::nullopt,
          "Context length in tokens. Default: 131072.");
ABSL_FLAG(std::optional<double>, rope_theta, std::nullopt,
          "RoPE base. Default: 500000.");
ABSL_FLAG(std::string, dtype, "f32", "Weight type: f32, f16 or bf16.");
ABSL_FLAG(bool, tie_word_embeddings, false,
          "Share the embedding with the output layer.");
ABSL_FLAG(bool, attention_bias, false, "Give q/k/v projections biases.");
ABSL_FLAG(std::string, tokenizer, "byte",
          "byte (the byte tokenizer), or a tokenizer.json laid out like a Hub "
          "family's, with merges learned from a shipped text: llama3, qwen2, "
          "mistral or llama2.");
ABSL_FLAG(int, tokenizer_merges, 1000,
          "BPE merges the tokenizer.json learns (fewer if the text runs out).");
ABSL_FLAG(int, shards, 1,
          "Number of safetensors files (N > 1 also writes "
          "model.safetensors.index.json).");

namespace longctx {
namespace {

absl::StatusOr<TinyModelOptions> OptionsFromFlags() {
  absl::StatusOr<TinyModelOptions> options =
      TinyModelPreset(absl::GetFlag(FLAGS_preset));
  if (!options.ok()) return options.status();
  auto override_with = [](const std::optional<int>& flag, int* field) {
    if (flag.has_value()) *field = *flag;
  };
  override_with(absl::GetFlag(FLAGS_hidden_size), &options->hidden_size);
  override_with(absl::GetFlag(FLAGS_intermediate_size),
                &options->intermediate_size);
  override_with(absl::GetFlag(FLAGS_num_layers), &options->num_layers);
  override_with(absl::GetFlag(FLAGS_num_heads), &options->num_heads);
  override_with(absl::GetFlag(FLAGS_num_kv_heads), &options->num_kv_heads);
  override_with(absl::GetFlag(FLAGS_vocab_size), &options->vocab_size);
  override_with(absl::GetFlag(FLAGS_max_position_embeddings),
                &options->max_position_embeddings);
  if (absl::GetFlag(FLAGS_rope_theta).has_value()) {
    options->rope_theta = *absl::GetFlag(FLAGS_rope_theta);
  }
  absl::StatusOr<kernels::DType> dtype =
      ParseTinyModelDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) return dtype.status();
  options->dtype = *dtype;
  options->seed = absl::GetFlag(FLAGS_seed);
  options->tie_word_embeddings = absl::GetFlag(FLAGS_tie_word_embeddings);
  options->attention_bias = absl::GetFlag(FLAGS_attention_bias);
  options->shards = absl::GetFlag(FLAGS_shards);
  options->tokenizer = absl::GetFlag(FLAGS_tokenizer);
  options->tokenizer_merges = absl::GetFlag(FLAGS_tokenizer_merges);
  return options;
}

int Main() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "make_tiny_model: --out is required\n");
    return 2;
  }
  absl::StatusOr<TinyModelOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "make_tiny_model: %s\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  const absl::Status status = WriteTinyModel(*options, out);
  if (!status.ok()) {
    std::fprintf(stderr, "make_tiny_model: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a seeded random Llama model folder. Usage: make_tiny_model "
      "--out=DIR [--preset=tiny|S|M] [--dtype=f32|f16|bf16] [--shards=N] ...");
  absl::ParseCommandLine(argc, argv);
  return longctx::Main();
}
