// Parser of the chat-template interpreter (internal): tokens (lexer.h) to
// the syntax tree (ast.h), with Jinja's grammar and operator precedence
// (lowest first): `a if c else b`; or; and; not; comparisons, in, not in
// (chained as in Python: a < b < c); + -; ~; * / // %; **; unary - +;
// then postfix .attr [index] [a:b:c] (call) and filters `|` / tests `is`.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_PARSER_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_PARSER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/ast.h"

namespace longctx {
namespace jinja {

// A parsed template: the normalized source (for error lines) and its
// statements.
struct Template {
  std::string source;
  Block body;
};

// ParseTemplate lexes and parses `source`. INVALID_ARGUMENT "chat template
// line L column C: <problem>" for a syntax error, a block left open or
// closed twice, an unknown tag, a construct outside the subset
// ({% include %}, {% extends %}, {% call %}, {% block %}, {% import %},
// recursive loops, *args in calls, ...), or nesting deeper than kMaxNesting.
absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(
    absl::string_view source);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_PARSER_H_
