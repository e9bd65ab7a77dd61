// Text helpers of the chat-template interpreter (internal): Python's notions
// of whitespace, case, string and float repr, json.dumps string escaping, on
// UTF-8 text. A byte sequence that is not UTF-8 counts as one character per
// maximal invalid part and is otherwise kept as it is.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_TEXT_UTIL_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_TEXT_UTIL_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace longctx {
namespace jinja {

// Python's str.isspace() for one code point.
bool IsPySpace(char32_t c);

// Byte offsets of the characters of `s`, plus s.size() at the end (so that
// character i is s.substr(offsets[i], offsets[i + 1] - offsets[i])).
std::vector<size_t> CharOffsets(absl::string_view s);

// Number of characters (code points) of `s`.
size_t CharCount(absl::string_view s);

// Whether every byte of `s` is ASCII (one character per byte).
bool IsAscii(absl::string_view s);

// The byte offset of the last character of `s` (not empty), decoded into
// *c.
size_t LastCharStart(absl::string_view s, char32_t* c);

// str.strip / lstrip / rstrip: without `chars` (nullptr) Python whitespace,
// else the characters of *chars.
std::string PyStrip(absl::string_view s, const std::string* chars, bool left,
                    bool right);

// str.split(sep=None, maxsplit): runs of whitespace separate, no empty parts
// at the ends.
std::vector<std::string> PySplitWhitespace(absl::string_view s,
                                           long long maxsplit);

// str.splitlines() (without keepends): Python's line boundaries.
std::vector<std::string> PySplitLines(absl::string_view s);

// Case mappings as Python's str methods (full Unicode mappings).
std::string PyUpper(absl::string_view s);
std::string PyLower(absl::string_view s);
// str.capitalize(): first character title-cased, the rest lowercased.
std::string PyCapitalize(absl::string_view s);
// str.title(): each run of cased characters starts title-cased, the rest
// lowercased.
std::string PyTitle(absl::string_view s);
// Jinja's `title` filter: words split at runs of -, whitespace, (, {, [, <
// start uppercase, the rest lowercase.
std::string JinjaTitle(absl::string_view s);
// str.islower() / str.isupper().
bool PyIsLower(absl::string_view s);
bool PyIsUpper(absl::string_view s);

// repr(str) as Python writes it, appended to *out.
void AppendPyStrRepr(absl::string_view s, std::string* out);

// repr(float): shortest round-trip digits, "1.0", "1e+16", "1e-05", "inf",
// "nan".
std::string PyFloatRepr(double d);

// A JSON string literal as Python's json.dumps writes it, appended to *out.
void AppendJsonString(absl::string_view s, bool ensure_ascii, std::string* out);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_TEXT_UTIL_H_
