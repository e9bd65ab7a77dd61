// Fuzz target: config.json parsing (model/folder/model_config.h), the first
// thing every service reads from a model folder.
//
// Input: the text of a config.json.
//
// Properties checked: ParseModelConfig never crashes or throws; an error has a
// message that starts with the source; a config that parses is valid
// (ValidateModelConfig) and survives ModelConfigToJson and a second parse
// unchanged, field by field.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_check.h"
#include "model/folder/model_config.h"

namespace longctx {
namespace {

bool SameRope(const std::optional<Llama3RopeConfig>& a,
              const std::optional<Llama3RopeConfig>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->factor == b->factor && a->low_freq_factor == b->low_freq_factor &&
         a->high_freq_factor == b->high_freq_factor &&
         a->original_max_position_embeddings ==
             b->original_max_position_embeddings;
}

bool SameConfig(const ModelConfig& a, const ModelConfig& b) {
  return a.architecture == b.architecture && a.hidden_size == b.hidden_size &&
         a.intermediate_size == b.intermediate_size &&
         a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads &&
         a.head_dim == b.head_dim && a.vocab_size == b.vocab_size &&
         a.rms_norm_eps == b.rms_norm_eps && a.rope_theta == b.rope_theta &&
         SameRope(a.rope_scaling, b.rope_scaling) &&
         a.max_position_embeddings == b.max_position_embeddings &&
         a.tie_word_embeddings == b.tie_word_embeddings &&
         a.attention_bias == b.attention_bias &&
         a.torch_dtype == b.torch_dtype && a.bos_token_id == b.bos_token_id &&
         a.eos_token_ids == b.eos_token_ids;
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text, "fuzz.json");
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
               "%s", config.status().ToString().c_str());
    FUZZ_CHECK(absl::StartsWith(config.status().message(), "fuzz.json: "),
               "the error does not name its source: %s",
               config.status().ToString().c_str());
    return 0;
  }
  const absl::Status valid = ValidateModelConfig(*config, "fuzz.json");
  FUZZ_CHECK(valid.ok(), "a parsed config is invalid: %s",
             valid.ToString().c_str());
  const std::string json = ModelConfigToJson(*config);
  absl::StatusOr<ModelConfig> again = ParseModelConfig(json, "again.json");
  FUZZ_CHECK(again.ok(), "ModelConfigToJson output does not parse: %s\n%s",
             again.status().ToString().c_str(), json.c_str());
  FUZZ_CHECK(SameConfig(*config, *again),
             "the config changed through ModelConfigToJson:\n%s", json.c_str());
  return 0;
}
