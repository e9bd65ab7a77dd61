// Filters and tests of the chat-template interpreter (internal), with
// Python Jinja's semantics (transformers' tojson: json.dumps with
// ensure_ascii, indent, separators, sort_keys). Each spends from the
// rendering's Budget in proportion to its work and the size of its result.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_FILTERS_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_FILTERS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/builtins.h"
#include "model/chat_template/value.h"

namespace longctx {
namespace jinja {

// value | name(args). INVALID_ARGUMENT "unknown filter 'x'" for a filter
// outside the subset, else naming the problem.
absl::StatusOr<Value> ApplyFilter(absl::string_view name, const Value& value,
                                  const CallArgs& args, Budget& budget);

// value is name(args). INVALID_ARGUMENT "unknown test 'x'" for a test
// outside the subset, else naming the problem.
absl::StatusOr<bool> ApplyTest(absl::string_view name, const Value& value,
                               const CallArgs& args, Budget& budget);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_FILTERS_H_
