#include "model/folder/model_config.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/folder/io_util.h"

namespace longctx {
namespace {

using Json = nlohmann::json;

constexpr int kMaxSize =
    1 << 24;  // Bound on every size, far above real models.

constexpr const char* kSupportedArchitectures[] = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};

bool IsSupportedArchitecture(absl::string_view architecture) {
  for (const char* supported : kSupportedArchitectures) {
    if (architecture == supported) return true;
  }
  return false;
}

const char* JsonTypeName(const Json& value) {
  if (value.is_number_integer()) return "integer";
  return value.type_name();
}

// FieldReader reads typed fields of one JSON object; errors start with the
// source and name the field (with its parent, e.g. "rope_scaling.factor").
class FieldReader {
 public:
  FieldReader(const Json& object, absl::string_view source,
              absl::string_view prefix)
      : object_(object), source_(source), prefix_(prefix) {}

  // Whether the field is present and not null.
  bool Has(const char* name) const {
    auto it = object_.find(name);
    return it != object_.end() && !it->is_null();
  }

  absl::Status Error(const char* name, absl::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", prefix_, name, " ", problem));
  }

  // Int stores the field in *out when present (leaving *out as is when absent
  // or null); `required` makes absence an error.
  absl::Status Int(const char* name, bool required, int* out) const {
    if (!Has(name)) {
      return required ? Error(name, "is required but missing")
                      : absl::OkStatus();
    }
    return IntValue(name, object_.at(name), out);
  }

  absl::Status IntValue(const char* name, const Json& value, int* out) const {
    if (!value.is_number_integer()) {
      return Error(name,
                   absl::StrCat("must be an integer, got ", JsonTypeName(value),
                                " ", JsonForMessage(value)));
    }
    if (value.is_number_unsigned()) {
      const uint64_t v = value.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
        return Error(name, absl::StrCat("is out of range: ", v));
      }
      *out = static_cast<int>(v);
      return absl::OkStatus();
    }
    const int64_t v = value.get<int64_t>();
    if (v < std::numeric_limits<int>::min() ||
        v > std::numeric_limits<int>::max()) {
      return Error(name, absl::StrCat("is out of range: ", v));
    }
    *out = static_cast<int>(v);
    return absl::OkStatus();
  }

  absl::Status Double(const char* name, bool required, double* out) const {
    if (!Has(name)) {
      return required ? Error(name, "is required but missing")
                      : absl::OkStatus();
    }
    const Json& value = object_.at(name);
    if (!value.is_number()) {
      return Error(
          name, absl::StrCat("must be a number, got ", JsonTypeName(value), " ",
                             JsonForMessage(value)));
    }
    *out = value.get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* name, bool* out) const {
    if (!Has(name)) return absl::OkStatus();
    const Json& value = object_.at(name);
    if (!value.is_boolean()) {
      return Error(
          name, absl::StrCat("must be true or false, got ", JsonTypeName(value),
                             " ", JsonForMessage(value)));
    }
    *out = value.get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* name, std::string* out) const {
    if (!Has(name)) return absl::OkStatus();
    const Json& value = object_.at(name);
    if (!value.is_string()) {
      return Error(
          name, absl::StrCat("must be a string, got ", JsonTypeName(value), " ",
                             JsonForMessage(value)));
    }
    *out = value.get<std::string>();
    return absl::OkStatus();
  }

  const Json& Get(const char* name) const { return object_.at(name); }

 private:
  const Json& object_;
  absl::string_view source_;
  absl::string_view prefix_;
};

absl::StatusOr<std::optional<Llama3RopeConfig>> ParseRopeScaling(
    const Json& value, absl::string_view source) {
  if (value.is_null()) return std::optional<Llama3RopeConfig>();
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": rope_scaling must be an object or null, got ",
                     JsonTypeName(value)));
  }
  FieldReader reader(value, source, "rope_scaling.");
  // transformers writes "rope_type"; older configs "type".
  std::string type;
  LONGCTX_RETURN_IF_ERROR(reader.String("type", &type));
  LONGCTX_RETURN_IF_ERROR(reader.String("rope_type", &type));
  if (type == "default") return std::optional<Llama3RopeConfig>();
  if (type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": rope_scaling type \"", type,
        "\" is not supported (only \"llama3\", \"default\" or null are)"));
  }
  Llama3RopeConfig rope;
  LONGCTX_RETURN_IF_ERROR(reader.Double("factor", true, &rope.factor));
  LONGCTX_RETURN_IF_ERROR(
      reader.Double("low_freq_factor", true, &rope.low_freq_factor));
  LONGCTX_RETURN_IF_ERROR(
      reader.Double("high_freq_factor", true, &rope.high_freq_factor));
  LONGCTX_RETURN_IF_ERROR(reader.Int("original_max_position_embeddings", true,
                                     &rope.original_max_position_embeddings));
  return std::optional<Llama3RopeConfig>(rope);
}

// Features of the supported architectures that longctx does not implement;
// serving such a model as if they were absent would give wrong outputs.
absl::Status CheckUnsupportedFeatures(const FieldReader& reader,
                                      const ModelConfig& config) {
  std::string activation = "silu";
  LONGCTX_RETURN_IF_ERROR(reader.String("hidden_act", &activation));
  if (activation != "silu") {
    return reader.Error("hidden_act",
                        absl::StrCat("\"", activation,
                                     "\" is not supported (only \"silu\" is)"));
  }
  bool mlp_bias = false;
  LONGCTX_RETURN_IF_ERROR(reader.Bool("mlp_bias", &mlp_bias));
  if (mlp_bias) return reader.Error("mlp_bias", "true is not supported");
  // Qwen2 turns its window on with use_sliding_window; Mistral with a
  // sliding_window shorter than the context.
  if (config.architecture == "Qwen2ForCausalLM") {
    bool use_sliding_window = false;
    LONGCTX_RETURN_IF_ERROR(
        reader.Bool("use_sliding_window", &use_sliding_window));
    if (use_sliding_window) {
      return reader.Error("use_sliding_window",
                          "true is not supported (sliding window attention)");
    }
  } else if (reader.Has("sliding_window")) {
    int window = 0;
    LONGCTX_RETURN_IF_ERROR(reader.Int("sliding_window", false, &window));
    if (window < config.max_position_embeddings) {
      return reader.Error(
          "sliding_window",
          absl::StrCat(window,
                       " is not supported (sliding window attention "
                       "shorter than max_position_embeddings ",
                       config.max_position_embeddings, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status InvalidField(absl::string_view source, absl::string_view field,
                          absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": ", field, " ", problem));
}

absl::Status CheckSize(absl::string_view source, absl::string_view field,
                       int value) {
  if (value <= 0) {
    return InvalidField(source, field,
                        absl::StrCat("must be positive, got ", value));
  }
  if (value > kMaxSize) {
    return InvalidField(source, field,
                        absl::StrCat(value, " is above the limit ", kMaxSize));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenId(absl::string_view source, absl::string_view field,
                          int id, int vocab_size) {
  if (id < 0 || id >= vocab_size) {
    return InvalidField(
        source, field,
        absl::StrCat(id, " is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

const char* ModelTypeOf(absl::string_view architecture) {
  if (architecture == "MistralForCausalLM") return "mistral";
  if (architecture == "Qwen2ForCausalLM") return "qwen2";
  return "llama";
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& config,
                                 absl::string_view source) {
  if (!IsSupportedArchitecture(config.architecture)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unsupported architecture \"", config.architecture,
        "\" (supported: ", absl::StrJoin(kSupportedArchitectures, ", "), ")"));
  }
  const std::pair<const char*, int> sizes[] = {
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"head_dim", config.head_dim},
      {"vocab_size", config.vocab_size},
      {"max_position_embeddings", config.max_position_embeddings}};
  for (const auto& [field, value] : sizes) {
    LONGCTX_RETURN_IF_ERROR(CheckSize(source, field, value));
  }
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return InvalidField(
        source, "num_attention_heads",
        absl::StrCat(config.num_attention_heads,
                     " is not a multiple of num_key_value_heads ",
                     config.num_key_value_heads));
  }
  if (config.head_dim % 2 != 0) {
    return InvalidField(
        source, "head_dim",
        absl::StrCat(config.head_dim, " must be even (rotary embedding)"));
  }
  if (static_cast<int64_t>(config.num_attention_heads) * config.head_dim >
      kMaxSize) {
    return InvalidField(source, "num_attention_heads * head_dim",
                        absl::StrCat("is above the limit ", kMaxSize));
  }
  if (!(config.rms_norm_eps > 0) || !std::isfinite(config.rms_norm_eps)) {
    return InvalidField(
        source, "rms_norm_eps",
        absl::StrCat("must be positive and finite, got ", config.rms_norm_eps));
  }
  if (!(config.rope_theta > 0) || !std::isfinite(config.rope_theta)) {
    return InvalidField(
        source, "rope_theta",
        absl::StrCat("must be positive and finite, got ", config.rope_theta));
  }
  if (config.rope_scaling.has_value()) {
    const Llama3RopeConfig& rope = *config.rope_scaling;
    if (!(rope.factor > 0) || !std::isfinite(rope.factor)) {
      return InvalidField(source, "rope_scaling.factor",
                          absl::StrCat("must be positive, got ", rope.factor));
    }
    if (!(rope.low_freq_factor > 0) || !std::isfinite(rope.low_freq_factor)) {
      return InvalidField(
          source, "rope_scaling.low_freq_factor",
          absl::StrCat("must be positive, got ", rope.low_freq_factor));
    }
    if (!(rope.high_freq_factor > rope.low_freq_factor) ||
        !std::isfinite(rope.high_freq_factor)) {
      return InvalidField(
          source, "rope_scaling.high_freq_factor",
          absl::StrCat(rope.high_freq_factor, " must be above low_freq_factor ",
                       rope.low_freq_factor));
    }
    LONGCTX_RETURN_IF_ERROR(
        CheckSize(source, "rope_scaling.original_max_position_embeddings",
                  rope.original_max_position_embeddings));
  }
  if (config.bos_token_id.has_value()) {
    LONGCTX_RETURN_IF_ERROR(CheckTokenId(
        source, "bos_token_id", *config.bos_token_id, config.vocab_size));
  }
  for (int id : config.eos_token_ids) {
    LONGCTX_RETURN_IF_ERROR(
        CheckTokenId(source, "eos_token_id", id, config.vocab_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source) {
  absl::StatusOr<Json> parsed = ParseJson(json_text, source);
  if (!parsed.ok()) return parsed.status();
  const Json& json = *parsed;
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": expected a JSON object, got ", JsonTypeName(json)));
  }
  FieldReader reader(json, source, "");
  ModelConfig config;

  if (!reader.Has("architectures")) {
    return reader.Error("architectures", "is required but missing");
  }
  const Json& architectures = reader.Get("architectures");
  if (!architectures.is_array() || architectures.empty() ||
      !architectures[0].is_string()) {
    return reader.Error("architectures",
                        absl::StrCat("must be a non-empty list of names, got ",
                                     JsonForMessage(architectures)));
  }
  config.architecture = architectures[0].get<std::string>();
  if (!IsSupportedArchitecture(config.architecture)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unsupported architecture \"", config.architecture,
        "\" (supported: ", absl::StrJoin(kSupportedArchitectures, ", "), ")"));
  }
  const bool is_qwen2 = config.architecture == "Qwen2ForCausalLM";
  const bool is_mistral = config.architecture == "MistralForCausalLM";

  LONGCTX_RETURN_IF_ERROR(reader.Int("hidden_size", true, &config.hidden_size));
  LONGCTX_RETURN_IF_ERROR(
      reader.Int("intermediate_size", true, &config.intermediate_size));
  LONGCTX_RETURN_IF_ERROR(
      reader.Int("num_hidden_layers", true, &config.num_hidden_layers));
  LONGCTX_RETURN_IF_ERROR(
      reader.Int("num_attention_heads", true, &config.num_attention_heads));
  config.num_key_value_heads = config.num_attention_heads;
  LONGCTX_RETURN_IF_ERROR(
      reader.Int("num_key_value_heads", false, &config.num_key_value_heads));
  LONGCTX_RETURN_IF_ERROR(reader.Int("vocab_size", true, &config.vocab_size));
  LONGCTX_RETURN_IF_ERROR(
      CheckSize(source, "num_attention_heads", config.num_attention_heads));
  if (reader.Has("head_dim")) {
    LONGCTX_RETURN_IF_ERROR(reader.Int("head_dim", false, &config.head_dim));
  } else {
    if (config.hidden_size % config.num_attention_heads != 0) {
      return reader.Error(
          "hidden_size",
          absl::StrCat(config.hidden_size,
                       " is not a multiple of num_attention_heads ",
                       config.num_attention_heads, " and head_dim is absent"));
    }
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  LONGCTX_RETURN_IF_ERROR(
      reader.Double("rms_norm_eps", false, &config.rms_norm_eps));
  LONGCTX_RETURN_IF_ERROR(
      reader.Double("rope_theta", false, &config.rope_theta));
  if (json.contains("rope_scaling")) {
    absl::StatusOr<std::optional<Llama3RopeConfig>> rope =
        ParseRopeScaling(json.at("rope_scaling"), source);
    if (!rope.ok()) return rope.status();
    config.rope_scaling = *rope;
  }
  config.max_position_embeddings = is_mistral ? 131072
                                   : is_qwen2 ? 32768
                                              : 2048;
  LONGCTX_RETURN_IF_ERROR(reader.Int("max_position_embeddings", false,
                                     &config.max_position_embeddings));
  LONGCTX_RETURN_IF_ERROR(
      reader.Bool("tie_word_embeddings", &config.tie_word_embeddings));
  config.attention_bias = is_qwen2;
  LONGCTX_RETURN_IF_ERROR(
      reader.Bool("attention_bias", &config.attention_bias));
  LONGCTX_RETURN_IF_ERROR(reader.String("torch_dtype", &config.torch_dtype));

  if (reader.Has("bos_token_id")) {
    int id = 0;
    LONGCTX_RETURN_IF_ERROR(reader.Int("bos_token_id", false, &id));
    config.bos_token_id = id;
  }
  if (reader.Has("eos_token_id")) {
    const Json& eos = reader.Get("eos_token_id");
    if (eos.is_array()) {
      for (const Json& item : eos) {
        int id = 0;
        LONGCTX_RETURN_IF_ERROR(reader.IntValue("eos_token_id", item, &id));
        config.eos_token_ids.push_back(id);
      }
    } else {
      int id = 0;
      LONGCTX_RETURN_IF_ERROR(reader.IntValue("eos_token_id", eos, &id));
      config.eos_token_ids.push_back(id);
    }
  }

  LONGCTX_RETURN_IF_ERROR(CheckUnsupportedFeatures(reader, config));
  LONGCTX_RETURN_IF_ERROR(ValidateModelConfig(config, source));
  return config;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "config.json");
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseModelConfig(*text, path);
}

std::string ModelConfigToJson(const ModelConfig& config) {
  Json json = Json::object();
  json["architectures"] = Json::array({config.architecture});
  json["model_type"] = ModelTypeOf(config.architecture);
  json["hidden_act"] = "silu";
  json["hidden_size"] = config.hidden_size;
  json["intermediate_size"] = config.intermediate_size;
  json["num_hidden_layers"] = config.num_hidden_layers;
  json["num_attention_heads"] = config.num_attention_heads;
  json["num_key_value_heads"] = config.num_key_value_heads;
  json["head_dim"] = config.head_dim;
  json["vocab_size"] = config.vocab_size;
  json["rms_norm_eps"] = config.rms_norm_eps;
  json["rope_theta"] = config.rope_theta;
  if (config.rope_scaling.has_value()) {
    const Llama3RopeConfig& rope = *config.rope_scaling;
    json["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", rope.factor},
                            {"low_freq_factor", rope.low_freq_factor},
                            {"high_freq_factor", rope.high_freq_factor},
                            {"original_max_position_embeddings",
                             rope.original_max_position_embeddings}};
  } else {
    json["rope_scaling"] = nullptr;
  }
  json["max_position_embeddings"] = config.max_position_embeddings;
  json["tie_word_embeddings"] = config.tie_word_embeddings;
  json["attention_bias"] = config.attention_bias;
  if (!config.torch_dtype.empty()) json["torch_dtype"] = config.torch_dtype;
  if (config.bos_token_id.has_value()) {
    json["bos_token_id"] = *config.bos_token_id;
  }
  if (config.eos_token_ids.size() == 1) {
    json["eos_token_id"] = config.eos_token_ids[0];
  } else if (!config.eos_token_ids.empty()) {
    json["eos_token_id"] = config.eos_token_ids;
  }
  return json.dump(2) + "\n";
}

}  // namespace longctx
