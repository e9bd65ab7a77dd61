// Reading the components of a tokenizer.json: typed field access whose errors
// name where in the file the problem is ("pre_tokenizer.pretokenizers[1]:
// ...").
#ifndef LONGCTX_MODEL_HF_TOKENIZER_SPEC_H_
#define LONGCTX_MODEL_HF_TOKENIZER_SPEC_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/hf_tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace longctx {

// SpecError returns INVALID_ARGUMENT "<where>: <message>".
absl::Status SpecError(absl::string_view where, absl::string_view message);

// SpecType returns the "type" of a component object; INVALID_ARGUMENT when
// `spec` is not an object with a string "type".
absl::StatusOr<std::string> SpecType(const nlohmann::json& spec,
                                     absl::string_view where);

// UnsupportedType returns INVALID_ARGUMENT naming the component kind and type
// that longctx does not implement.
absl::Status UnsupportedType(absl::string_view where, absl::string_view kind,
                             absl::string_view type);

// SpecString returns spec[key] as a string: `fallback` when absent or null
// and a fallback is given, INVALID_ARGUMENT when it is another type or
// absent without a fallback.
absl::StatusOr<std::string> SpecString(const nlohmann::json& spec,
                                       absl::string_view key,
                                       absl::string_view where,
                                       const char* fallback = nullptr);

// SpecBool returns spec[key] as a bool, `fallback` when absent or null.
absl::StatusOr<bool> SpecBool(const nlohmann::json& spec, absl::string_view key,
                              absl::string_view where, bool fallback);

// SpecInt returns spec[key] as an integer, `fallback` when absent or null.
absl::StatusOr<int64_t> SpecInt(const nlohmann::json& spec,
                                absl::string_view key, absl::string_view where,
                                int64_t fallback);

// SpecPattern compiles a pattern object, {"String": "..."} (literal text) or
// {"Regex": "..."}, found at spec[key].
absl::StatusOr<std::unique_ptr<Regex>> SpecPattern(const nlohmann::json& spec,
                                                   absl::string_view key,
                                                   absl::string_view where);

// SpecChar returns spec[key], a string of exactly one character (e.g.
// Metaspace's "replacement"), `fallback` when absent.
absl::StatusOr<std::string> SpecChar(const nlohmann::json& spec,
                                     absl::string_view key,
                                     absl::string_view where,
                                     const char* fallback);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_SPEC_H_
