#include "model/hf_tokenizer/spec.h"

#include "absl/strings/str_cat.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

const nlohmann::json* Find(const nlohmann::json& spec, absl::string_view key) {
  if (!spec.is_object()) return nullptr;
  auto it = spec.find(std::string(key));
  if (it == spec.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

absl::Status SpecError(absl::string_view where, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", message));
}

absl::StatusOr<std::string> SpecType(const nlohmann::json& spec,
                                     absl::string_view where) {
  if (!spec.is_object()) return SpecError(where, "must be an object");
  const nlohmann::json* type = Find(spec, "type");
  if (type == nullptr || !type->is_string()) {
    return SpecError(where, "has no \"type\"");
  }
  return type->get<std::string>();
}

absl::Status UnsupportedType(absl::string_view where, absl::string_view kind,
                             absl::string_view type) {
  return SpecError(
      where, absl::StrCat(kind, " \"", type, "\" is not supported by longctx"));
}

absl::StatusOr<std::string> SpecString(const nlohmann::json& spec,
                                       absl::string_view key,
                                       absl::string_view where,
                                       const char* fallback) {
  const nlohmann::json* value = Find(spec, key);
  if (value == nullptr) {
    if (fallback != nullptr) return std::string(fallback);
    return SpecError(where, absl::StrCat("\"", key, "\" is missing"));
  }
  if (!value->is_string()) {
    return SpecError(where, absl::StrCat("\"", key, "\" must be a string"));
  }
  std::string text = value->get<std::string>();
  if (!IsValidUtf8(text)) {
    return SpecError(where, absl::StrCat("\"", key, "\" is not UTF-8"));
  }
  return text;
}

absl::StatusOr<bool> SpecBool(const nlohmann::json& spec, absl::string_view key,
                              absl::string_view where, bool fallback) {
  const nlohmann::json* value = Find(spec, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) {
    return SpecError(where,
                     absl::StrCat("\"", key, "\" must be true or false"));
  }
  return value->get<bool>();
}

absl::StatusOr<int64_t> SpecInt(const nlohmann::json& spec,
                                absl::string_view key, absl::string_view where,
                                int64_t fallback) {
  const nlohmann::json* value = Find(spec, key);
  if (value == nullptr) return fallback;
  if (!value->is_number_integer()) {
    return SpecError(where, absl::StrCat("\"", key, "\" must be an integer"));
  }
  return value->get<int64_t>();
}

absl::StatusOr<std::unique_ptr<Regex>> SpecPattern(const nlohmann::json& spec,
                                                   absl::string_view key,
                                                   absl::string_view where) {
  const nlohmann::json* pattern = Find(spec, key);
  const std::string at = absl::StrCat(where, ".", key);
  if (pattern == nullptr || !pattern->is_object() || pattern->size() != 1) {
    return SpecError(at, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  const bool literal = pattern->contains("String");
  if (!literal && !pattern->contains("Regex")) {
    return SpecError(at, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  absl::StatusOr<std::string> text =
      SpecString(*pattern, literal ? "String" : "Regex", at);
  if (!text.ok()) return text.status();
  if (text->empty()) return SpecError(at, "is empty");
  absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(*text, literal);
  if (!regex.ok()) return SpecError(at, regex.status().message());
  return regex;
}

absl::StatusOr<std::string> SpecChar(const nlohmann::json& spec,
                                     absl::string_view key,
                                     absl::string_view where,
                                     const char* fallback) {
  absl::StatusOr<std::string> text = SpecString(spec, key, where, fallback);
  if (!text.ok()) return text.status();
  char32_t cp;
  if (text->empty() || DecodeUtf8Char(*text, &cp) != text->size()) {
    return SpecError(where,
                     absl::StrCat("\"", key, "\" must be one character"));
  }
  return text;
}

}  // namespace longctx
