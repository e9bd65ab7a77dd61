#include "model/folder/generation_config.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "model/folder/io_util.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view source, absl::string_view field,
                 absl::string_view what, const Json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": \"", field, "\" ", what, ", got ", value.dump()));
}

// An integer in [lo, hi].
absl::Status Int(absl::string_view source, absl::string_view field,
                 const Json& value, int lo, int hi, int* out) {
  if (!value.is_number_integer()) {
    return Bad(source, field, "must be an integer", value);
  }
  const int64_t v = value.is_number_unsigned()
                        ? static_cast<int64_t>(std::min<uint64_t>(
                              value.get<uint64_t>(),
                              uint64_t{std::numeric_limits<int64_t>::max()}))
                        : value.get<int64_t>();
  if (v < lo || v > hi) {
    return Bad(source, field, absl::StrCat("must be in [", lo, ", ", hi, "]"),
               value);
  }
  *out = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status Float(absl::string_view source, absl::string_view field,
                   const Json& value, float* out) {
  if (!value.is_number()) return Bad(source, field, "must be a number", value);
  const double v = value.get<double>();
  if (!std::isfinite(v)) return Bad(source, field, "must be finite", value);
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

}  // namespace

float GenerationConfig::DefaultTemperature(float fallback) const {
  if (do_sample.has_value() && !*do_sample) return 0.0f;
  return temperature.value_or(fallback);
}

absl::StatusOr<GenerationConfig> ParseGenerationConfig(
    absl::string_view json_text, absl::string_view source, int vocab_size) {
  absl::StatusOr<Json> parsed = ParseJson(json_text, source);
  if (!parsed.ok()) return parsed.status();
  const Json& json = *parsed;
  if (!json.is_object()) {
    return Bad(source, "(top level)", "must be a JSON object", json);
  }
  GenerationConfig config;
  auto field = [&](const char* name) -> const Json* {
    auto it = json.find(name);
    return it == json.end() || it->is_null() ? nullptr : &*it;
  };
  if (const Json* eos = field("eos_token_id")) {
    const Json list = eos->is_array() ? *eos : Json::array({*eos});
    for (const Json& item : list) {
      int id = 0;
      absl::Status status =
          Int(source, "eos_token_id", item, 0, vocab_size - 1, &id);
      if (!status.ok()) return status;
      config.eos_token_ids.push_back(id);
    }
  }
  if (const Json* v = field("do_sample")) {
    if (!v->is_boolean()) return Bad(source, "do_sample", "must be a bool", *v);
    config.do_sample = v->get<bool>();
  }
  if (const Json* v = field("temperature")) {
    float t = 0;
    absl::Status status = Float(source, "temperature", *v, &t);
    if (!status.ok()) return status;
    if (t < 0) return Bad(source, "temperature", "must be >= 0", *v);
    config.temperature = t;
  }
  if (const Json* v = field("top_p")) {
    float p = 0;
    absl::Status status = Float(source, "top_p", *v, &p);
    if (!status.ok()) return status;
    if (!(p > 0 && p <= 1))
      return Bad(source, "top_p", "must be in (0, 1]", *v);
    config.top_p = p;
  }
  if (const Json* v = field("top_k")) {
    int k = 0;
    absl::Status status =
        Int(source, "top_k", *v, 0, std::numeric_limits<int>::max(), &k);
    if (!status.ok()) return status;
    config.top_k = k;
  }
  if (const Json* v = field("max_new_tokens")) {
    int n = 0;
    absl::Status status = Int(source, "max_new_tokens", *v, 1,
                              std::numeric_limits<int>::max(), &n);
    if (!status.ok()) return status;
    config.max_new_tokens = n;
  }
  return config;
}

absl::StatusOr<GenerationConfig> LoadGenerationConfig(
    const std::string& model_dir, int vocab_size) {
  const std::string path = JoinPath(model_dir, "generation_config.json");
  if (!PathExists(path)) return GenerationConfig();
  absl::StatusOr<std::string> text = ReadFile(path, kMaxGenerationConfigBytes);
  if (!text.ok()) return text.status();
  return ParseGenerationConfig(*text, path, vocab_size);
}

}  // namespace longctx
