// Regex: the regular expressions of tokenizer.json (pre-tokenizer splits,
// Replace normalizers and decoders), compiled with PCRE2 in UTF mode with
// Unicode properties (\p{L}, \s and \w by Unicode), JIT-compiled.
//
// tokenizer.json patterns are written for Oniguruma (the Rust tokenizers'
// engine); the constructs the model families use — Unicode classes,
// lookahead, (?i:...) groups, possessive quantifiers — mean the same in PCRE2.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_REGEX_H_
#define LONGCTX_MODEL_HF_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longctx {

// Regex is immutable after Compile; ForEachMatch is thread-safe.
class Regex {
 public:
  // Compile compiles `pattern` (a regular expression, or literal text when
  // `literal`). INVALID_ARGUMENT with PCRE2's message and offset when it
  // does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(
      absl::string_view pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // ForEachMatch calls fn(start, end) for every match in `text` (valid
  // UTF-8: the caller checks), left to right, not overlapping. An empty match
  // is not reported; the search goes on one character later. INTERNAL when
  // PCRE2 gives up (e.g. its backtracking limit on pathological input).
  absl::Status ForEachMatch(absl::string_view text,
                            absl::FunctionRef<void(size_t, size_t)> fn) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;

  std::string pattern_;
  void* code_ = nullptr;           // pcre2_code_8*
  void* match_context_ = nullptr;  // pcre2_match_context_8*
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_REGEX_H_
