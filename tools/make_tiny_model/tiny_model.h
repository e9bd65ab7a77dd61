// WriteTinyModel: writes a seeded random Llama model as a Hugging Face folder
// (config.json, safetensors weights, and a tokenizer_config.json that selects
// the byte tokenizer), the embedded default model of longctx and the fixture
// of its tests.
#ifndef LONGCTX_TOOLS_MAKE_TINY_MODEL_TINY_MODEL_H_
#define LONGCTX_TOOLS_MAKE_TINY_MODEL_TINY_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace longctx {

// TinyModelOptions describes the model to write. The defaults are the "tiny"
// preset.
struct TinyModelOptions {
  // Seed of every weight: the same options give byte-identical files.
  uint64_t seed = 1;
  int hidden_size = 64;
  int intermediate_size = 128;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 2;
  // At least 258: ids 0..255 are bytes, 256 is bos, 257 eos (the byte
  // tokenizer's); ids above are valid model outputs that decode to nothing.
  int vocab_size = 258;
  // Tokens.
  int max_position_embeddings = 131072;
  // Llama 3's base, which keeps positions distinguishable over long contexts.
  double rope_theta = 500000.0;
  double rms_norm_eps = 1e-5;
  // Element type of every tensor.
  kernels::DType dtype = kernels::DType::kF32;
  bool tie_word_embeddings = false;
  // Adds q/k/v projection biases (as Qwen2 has).
  bool attention_bias = false;
  // Number of safetensors files: 1 writes model.safetensors; N > 1 writes
  // model-0000k-of-0000N.safetensors and model.safetensors.index.json.
  int shards = 1;
  // The tokenizer: "byte" (tokenizer_config.json selects the byte
  // tokenizer), or a family of model/hf_tokenizer/tokenizer_families.h
  // ("llama3", "qwen2", "mistral", "llama2"): a tokenizer.json with
  // `tokenizer_merges` merges learned from TokenizerTrainingText(), its
  // tokenizer_config.json, and the family's bos / eos ids in config.json and
  // generation_config.json. vocab_size grows to the tokenizer's ids when
  // smaller.
  std::string tokenizer = "byte";
  int tokenizer_merges = 1000;
};

// TinyModelPreset returns the options of a named preset: "tiny" (hidden 64, 2
// layers, 4 heads over 2 KV heads, FFN 128, vocab 258: fast tests), "S"
// (hidden 512, 8 layers, 8 heads over 4 KV heads, FFN 1536, vocab 32000) or
// "M" (hidden 1024, 12 layers, 16 heads over 4 KV heads, FFN 2816, vocab
// 32000). INVALID_ARGUMENT for another name.
absl::StatusOr<TinyModelOptions> TinyModelPreset(absl::string_view name);

// ParseTinyModelDtype maps "f32", "f16" or "bf16" to a DType;
// INVALID_ARGUMENT otherwise.
absl::StatusOr<kernels::DType> ParseTinyModelDtype(absl::string_view name);

// WriteTinyModel writes the model and its tokenizer into `dir`, creating the
// folder when needed and replacing the weight files of an earlier model there;
// config.json is written last, so a folder with a config.json is complete.
// Weights are normal with std 1/sqrt(fan_in) for projections and the
// untied lm_head, 1 for an untied embedding (1/sqrt(hidden) when tied, as
// it is also the lm_head), 0.1 for biases; norm weights are 1 + N(0, 0.05).
// INVALID_ARGUMENT for inconsistent options (see ValidateModelConfig, vocab
// below 258, shards outside [1, number of tensors]); the file system's errors
// otherwise. Not thread-safe for the same `dir`.
absl::Status WriteTinyModel(const TinyModelOptions& options,
                            const std::string& dir);

}  // namespace longctx

#endif  // LONGCTX_TOOLS_MAKE_TINY_MODEL_TINY_MODEL_H_
