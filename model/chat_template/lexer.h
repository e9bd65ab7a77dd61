// Lexer of the chat-template interpreter (internal): splits a template into
// text and the tokens of its {{ }} and {% %} tags, the way Jinja does with
// trim_blocks and lstrip_blocks on (transformers' settings):
//  - "\r\n" and "\r" become "\n" and one trailing newline of the template is
//    dropped (keep_trailing_newline off);
//  - comments {# #} vanish;
//  - "{%-", "{{-", "{#-" strip the whitespace before the tag, "-%}", "-}}",
//    "-#}" the whitespace after it;
//  - trim_blocks: the newline right after "%}" or "#}" is removed ("+%}"
//    keeps it);
//  - lstrip_blocks: whitespace between the start of a line and "{%" or "{#"
//    is removed ("{%+" keeps it);
//  - inside a tag, "}}" and "%}" end it only outside brackets, so that
//    {{ {'a': {'b': 1}} }} works.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_LEXER_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_LEXER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longctx {
namespace jinja {

enum class TokenKind {
  kText,       // template data outside tags (text holds it)
  kExprBegin,  // {{
  kExprEnd,    // }}
  kStmtBegin,  // {%
  kStmtEnd,    // %}
  kName,       // identifier (text)
  kString,     // string literal (text: the value, escapes resolved)
  kInt,        // integer literal (int_value)
  kFloat,      // float literal (float_value)
  kOp,         // operator or punctuation (text: "+", "//", "==", "(", ...)
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  // Byte offset of the token in the normalized source.
  size_t offset = 0;
};

// NormalizeSource applies the newline rules above ("\r\n" / "\r" -> "\n",
// one trailing "\n" dropped). Offsets of tokens refer to its result.
std::string NormalizeSource(absl::string_view source);

// Tokenize splits a normalized source; the last token is kEof.
// INVALID_ARGUMENT "chat template line L column C: <problem>" for an
// unterminated tag, comment or string, an unexpected character or
// unbalanced brackets.
absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source);

// SyntaxError returns INVALID_ARGUMENT "chat template line L column C:
// <problem>" for the position `offset` of the normalized `source` (columns
// count characters, from 1).
absl::Status SyntaxError(absl::string_view source, size_t offset,
                         absl::string_view problem);

// LineOf returns the 1-based line of `offset` in `source`.
int LineOf(absl::string_view source, size_t offset);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_LEXER_H_
