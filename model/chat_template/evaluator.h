// Evaluator of the chat-template interpreter (internal): renders a parsed
// Template with the variables of a JSON context under ChatTemplateLimits.
//
// Scoping follows Python Jinja: each iteration of a for loop has its own
// scope (a `set` inside a loop body is gone after the iteration, which is
// why templates carry state in a namespace()), if blocks share the scope
// around them, a macro call has its own scope over the scope the macro was
// defined in, and `{% set %}` at the top level sets a template variable.
//
// Undefined: printing it gives "", its attributes and items are undefined,
// `is defined` tests it, `x in undefined` is false, `|length` is 0 and
// `|default` replaces it; iterating it (for, join, map, ...) and calling it
// fail naming it.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_EVALUATOR_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_EVALUATOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/chat_template/chat_template.h"
#include "model/chat_template/parser.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace jinja {

// RenderTemplate renders `tmpl`. INVALID_ARGUMENT "raise_exception: <msg>"
// when the template raises, "chat template line L: <problem>" for another
// rendering error; RESOURCE_EXHAUSTED naming the limit (max_steps,
// max_output_bytes, max_depth) that bound.
absl::StatusOr<std::string> RenderTemplate(const Template& tmpl,
                                           const nlohmann::json& context,
                                           const ChatTemplateLimits& limits);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_EVALUATOR_H_
