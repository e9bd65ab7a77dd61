// ChatTemplate: the Jinja chat templates of Hugging Face model folders
// (tokenizer_config.json "chat_template", chat_template.jinja), rendered by an
// interpreter of the Jinja subset those templates use: {{ }}, {% %}, {# #},
// whitespace control (-) with trim_blocks and lstrip_blocks on (as the
// transformers library renders them), for (with loop.*, else, filters `if`,
// break / continue), if / elif / else, set (also `set ns.attr = ...`, tuple
// unpacking and block set), namespace(), macros (defaults, keyword
// arguments, varargs / kwargs), {% filter %} blocks, transformers'
// {% generation %}, filters (trim, tojson, length, upper, lower, title,
// capitalize, default, join, first, last, list, string, int, float, replace,
// items, selectattr, rejectattr, map, indent, reverse, sort, unique, round,
// abs; also count, d, dictsort, select, reject, sum, min, max, safe,
// escape / e, attr), tests (defined, undefined, none, string, number,
// mapping, sequence, iterable, boolean, true, false, odd, even, divisibleby,
// equalto / eq; also integer, float, callable, lower, upper, in, sameas,
// ne, lt, le, gt, ge), operators (+ - * / // % ** ~ and or not in is,
// comparisons chained as in Python, a if c else b), literals (strings with
// Python escapes, numbers, lists, dicts, tuples, true / false / none in
// both cases), subscripts and slices, string methods (strip, lstrip, rstrip,
// startswith, endswith, split, upper, lower, title, replace, capitalize,
// format; also rsplit, splitlines, join, find, count, isdigit, isalpha,
// isalnum, isspace, islower, isupper), dict methods (items, keys, values,
// get), and the globals raise_exception(message), range(),
// strftime_now(format) (UTC), namespace(), dict().
//
// Semantics are Python Jinja's as transformers uses it: Python's printing
// (None, True, 2.0, ['a']), scoping (a `set` in a loop body lasts one
// iteration), integer and float arithmetic, string methods on Unicode
// characters. Deliberate differences: integers are 64-bit (overflow is an
// error); dict keys are strings; an attribute or item of an undefined value
// is undefined rather than an error, while iterating or calling an undefined
// value is an error naming it (Python Jinja iterates it as empty). Outside
// the subset: the call, include, extends, import and raw tags, recursive
// loops, and *args / **kwargs in calls.
//
// A template it cannot parse fails at Parse with the line and column; one
// that fails while rendering (raise_exception, a type error, an unknown
// filter, a limit) fails at Render naming the problem: never a silently
// wrong prompt.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_CHAT_TEMPLATE_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

// Bounds on one rendering, so that a template (or the messages it loops
// over) cannot run away with time, memory or the stack.
struct ChatTemplateLimits {
  // Bytes of output; also the largest string any operation may build.
  size_t max_output_bytes = size_t{64} << 20;
  // Evaluation steps: one per expression and statement executed, plus one
  // per list item and per 16 bytes of text an operation builds, copies or
  // scans (so range(10**12) fails before allocating anything).
  int64_t max_steps = 50'000'000;
  // Nesting of macro calls, blocks and expressions being evaluated at once.
  int max_depth = 200;
};

// A parsed template: immutable after Parse; Render is thread-safe.
class ChatTemplate {
 public:
  // Parse compiles `source`. INVALID_ARGUMENT "chat template line L column C:
  // <problem>" for a syntax error, a construct outside the subset, or
  // nesting deeper than 256 levels.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(
      absl::string_view source);
  ~ChatTemplate();

  // Render renders the template with the variables of `context` (a JSON
  // object, or null for none: typically messages, add_generation_prompt,
  // bos_token, eos_token, tools; JSON objects become dicts in the order the
  // json holds their keys, which nlohmann::json sorts). INVALID_ARGUMENT
  // naming the problem when rendering fails: "raise_exception: <the
  // template's message>", else "chat template line L: <problem>" for a type
  // error, an undefined value called or iterated, an unknown filter or test;
  // RESOURCE_EXHAUSTED naming the limit that bound (max_steps,
  // max_output_bytes, max_depth).
  absl::StatusOr<std::string> Render(
      const nlohmann::json& context,
      const ChatTemplateLimits& limits = ChatTemplateLimits()) const;

 private:
  struct Program;
  explicit ChatTemplate(std::unique_ptr<Program> program);
  std::unique_ptr<Program> program_;
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_CHAT_TEMPLATE_H_
