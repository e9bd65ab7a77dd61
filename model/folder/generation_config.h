// GenerationConfig: what a Hugging Face model folder's generation_config.json
// says about generating with the model: the ids that end a sequence (chat
// models often have several: Llama 3's <|eot_id|> and <|eom_id|> besides
// <|end_of_text|>) and the sampling its authors recommend, which the gateway
// uses for requests that do not choose their own.
#ifndef LONGCTX_MODEL_FOLDER_GENERATION_CONFIG_H_
#define LONGCTX_MODEL_FOLDER_GENERATION_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longctx {

// GenerationConfig holds the fields longctx uses; each absent field is empty.
// Other fields (repetition_penalty, num_beams, ...) are ignored: longctx
// samples with temperature, top-k and top-p only.
struct GenerationConfig {
  // "eos_token_id": one id or a list.
  std::vector<int> eos_token_ids;
  // "do_sample": false means greedy decoding.
  std::optional<bool> do_sample;
  std::optional<float> temperature;   // >= 0, finite.
  std::optional<float> top_p;         // In (0, 1].
  std::optional<int> top_k;           // >= 0; 0 keeps all tokens.
  std::optional<int> max_new_tokens;  // >= 1.

  // The temperature a request without one gets: 0 (greedy) when do_sample
  // is false, else `temperature` when set, else `fallback`.
  float DefaultTemperature(float fallback) const;
};

// ParseGenerationConfig parses the text of a generation_config.json;
// `source` starts every error message. INVALID_ARGUMENT for malformed JSON, a
// field of the wrong type or out of range (naming it), or an eos id outside
// [0, vocab_size). Never throws.
absl::StatusOr<GenerationConfig> ParseGenerationConfig(
    absl::string_view json_text, absl::string_view source, int vocab_size);

// Most bytes of a generation_config.json (they have a few hundred).
inline constexpr size_t kMaxGenerationConfigBytes = 1 << 20;

// LoadGenerationConfig reads `model_dir`/generation_config.json; a folder
// without one gives an empty GenerationConfig. A file over
// kMaxGenerationConfigBytes is INVALID_ARGUMENT, refused before it is read.
absl::StatusOr<GenerationConfig> LoadGenerationConfig(
    const std::string& model_dir, int vocab_size);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_GENERATION_CONFIG_H_
