// ModelConfig: the description of a Llama-family decoder read from a Hugging
// Face config.json (architecture, sizes, normalization, rotary embedding,
// special token ids).
#ifndef LONGCTX_MODEL_FOLDER_MODEL_CONFIG_H_
#define LONGCTX_MODEL_FOLDER_MODEL_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longctx {

// Llama3RopeConfig is a Llama 3.1 style `rope_scaling` ("rope_type": "llama3"):
// low frequencies are divided by `factor`, high ones kept, a smooth ramp in
// between.
struct Llama3RopeConfig {
  double factor = 8.0;                          // > 0.
  double low_freq_factor = 1.0;                 // > 0.
  double high_freq_factor = 4.0;                // > low_freq_factor.
  int original_max_position_embeddings = 8192;  // Tokens; > 0.
};

// ModelConfig holds the fields of config.json that longctx uses. Defaults are
// those of the Hugging Face class of the architecture when a field is absent.
struct ModelConfig {
  // "LlamaForCausalLM", "MistralForCausalLM" or "Qwen2ForCausalLM": the first
  // entry of "architectures".
  std::string architecture;
  int hidden_size = 0;
  int intermediate_size = 0;  // SwiGLU width.
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  // Default: num_attention_heads (no grouped-query attention).
  int num_key_value_heads = 0;
  // Default: hidden_size / num_attention_heads. Even (rotary pairs).
  int head_dim = 0;
  int vocab_size = 0;
  // Default: 1e-6.
  double rms_norm_eps = 1e-6;
  // Base of the rotary frequencies. Default: 10000.
  double rope_theta = 10000.0;
  // Absent ("rope_scaling": null or missing) means no scaling.
  std::optional<Llama3RopeConfig> rope_scaling;
  // Tokens. Default: 2048 (Llama), 131072 (Mistral), 32768 (Qwen2).
  int max_position_embeddings = 0;
  // Whether lm_head shares model.embed_tokens.weight. Default: false.
  bool tie_word_embeddings = false;
  // Whether q/k/v projections have biases. Default: true for Qwen2, false
  // otherwise; an explicit "attention_bias" wins.
  bool attention_bias = false;
  // "float32", "float16", "bfloat16", ...; empty when absent. Informational:
  // each tensor's own dtype is what counts.
  std::string torch_dtype;
  std::optional<int> bos_token_id;
  // "eos_token_id" may be one id or a list; empty when absent or null.
  std::vector<int> eos_token_ids;

  // Derived sizes.
  int q_size() const { return num_attention_heads * head_dim; }
  int kv_size() const { return num_key_value_heads * head_dim; }
};

// ParseModelConfig parses the text of a config.json; `source` (e.g. the file's
// path) starts every error message. Returns INVALID_ARGUMENT for malformed
// JSON, a field of the wrong type, a missing required field (hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, vocab_size), an
// unsupported architecture or feature (rope_scaling other than llama3, sliding
// window attention, hidden_act other than silu, MLP biases), and whatever
// ValidateModelConfig rejects. Never throws. Thread-safe.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source);

// LoadModelConfig reads and parses `model_dir`/config.json. NOT_FOUND when the
// file does not exist; otherwise as ParseModelConfig, with the file's path in
// the messages.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// ValidateModelConfig checks the consistency of a config: a supported
// architecture, positive sizes (each at most 2^24), attention heads a multiple
// of KV heads, an even head_dim, positive finite rms_norm_eps and rope_theta,
// valid llama3 scaling (positive factors, high_freq_factor above
// low_freq_factor), special token ids in [0, vocab_size).
// INVALID_ARGUMENT naming `source` and the field otherwise.
absl::Status ValidateModelConfig(const ModelConfig& config,
                                 absl::string_view source);

// ModelConfigToJson renders `config` as config.json text that Hugging Face
// transformers and ParseModelConfig both read back to the same values.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_MODEL_CONFIG_H_
