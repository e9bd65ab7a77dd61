// UTF-8 helpers shared by the tokenizers: decoding one character, encoding a
// code point, and replacing bytes that are not UTF-8 with U+FFFD.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_UTF8_H_
#define LONGCTX_MODEL_HF_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace longctx {

// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline constexpr absl::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// ValidUtf8PrefixLength returns how many bytes at the start of `s` (at most
// one character) form a valid UTF-8 character or the valid beginning of one
// (cut short by the end of `s` or by a byte that cannot follow); `*complete`
// says which. Returns 0 when s[0] cannot start a character. `s` is not empty.
size_t ValidUtf8PrefixLength(absl::string_view s, bool* complete);

// DecodeUtf8Char decodes the character at the start of `s` (not empty) into
// `*code_point` and returns its length in bytes. A byte sequence that is not
// UTF-8 yields U+FFFD and the length of its maximal invalid part (>= 1), as
// Unicode's "substitution of maximal subparts" prescribes.
size_t DecodeUtf8Char(absl::string_view s, char32_t* code_point);

// AppendUtf8 appends the UTF-8 encoding of `code_point` (<= U+10FFFF, not a
// surrogate) to `out`.
void AppendUtf8(char32_t code_point, std::string* out);

// IsValidUtf8 reports whether `s` is entirely well-formed UTF-8.
bool IsValidUtf8(absl::string_view s);

// SanitizeUtf8 returns `s` with every maximal byte sequence that is not UTF-8
// replaced by one U+FFFD (what WHATWG's TextDecoder and Rust's
// from_utf8_lossy do).
std::string SanitizeUtf8(absl::string_view s);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_UTF8_H_
