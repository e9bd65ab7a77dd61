// Normalizers of tokenizer.json: rewrite the text before it is split into
// words (Unicode normalization forms, Prepend, Replace, Strip, Lowercase and
// Sequences of them).
#ifndef LONGCTX_MODEL_HF_TOKENIZER_NORMALIZER_H_
#define LONGCTX_MODEL_HF_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

// A Normalizer is immutable; Normalize is thread-safe.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Normalize rewrites `text` (valid UTF-8) in place; it stays valid UTF-8.
  virtual absl::Status Normalize(std::string* text) const = 0;
};

// MakeNormalizer builds the normalizer `spec` describes (nullptr for JSON
// null: no normalization). INVALID_ARGUMENT naming `where` and the type for a
// malformed or unsupported one (e.g. "Precompiled", "BertNormalizer").
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(
    const nlohmann::json& spec, absl::string_view where);

// IsUnicodeWhitespace reports whether `cp` has Unicode's White_Space
// property (what Rust's char::is_whitespace tests).
bool IsUnicodeWhitespace(char32_t cp);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_NORMALIZER_H_
