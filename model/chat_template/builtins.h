// Built-ins of the chat-template interpreter (internal): attribute and item
// access, the methods of strings, dicts and the loop object, and the globals
// that need no interpreter state, with Python Jinja's semantics (filters and
// tests: filters.h). Every function spends from the rendering's Budget in
// proportion to the work it does and the size of what it builds.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_BUILTINS_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_BUILTINS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/value.h"

namespace longctx {
namespace jinja {

struct Stmt;
struct Scope;

// A callable value: a macro, a global function or a bound method.
struct CallableData {
  enum class Type { kMacro, kGlobal, kMethod };
  Type type = Type::kGlobal;
  // Macro name, global name or method name.
  std::string name;
  // kMethod: the object the method is bound to (a string, dict or loop).
  Value self;
  // kMacro: its definition and the scope it was defined in (weak: a scope
  // holds its macros, and the scope outlives every call made while it is
  // alive).
  const Stmt* macro = nullptr;
  std::weak_ptr<Scope> scope;
  // 1 + the nesting of `self` (Value::nesting).
  int nesting = 1;
};

// Arguments of a call, filter or test.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// The items of an iterable: a list or tuple as it is, the characters of a
// string, the keys of a dict. INVALID_ARGUMENT for anything else (undefined
// included: "cannot iterate over an undefined value").
absl::StatusOr<std::shared_ptr<const ListData>> AsSequence(const Value& v,
                                                           Budget& budget);

// obj.name as Jinja resolves it: dict methods (items, keys, values, get)
// and string methods first, then the dict key / namespace attribute; the
// fields of `loop`. Undefined when there is none (also on undefined).
Value GetAttr(const Value& obj, absl::string_view name);

// obj[key]: list / string index (negative from the end), dict key,
// namespace attribute, else obj.key for a string key; undefined when there
// is none (also on undefined).
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key,
                              Budget& budget);

// obj[start:stop:step] on a list, tuple or string (Python semantics; null or
// undefined bounds are omitted ones).
absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start,
                               const Value& stop, const Value& step,
                               Budget& budget);

// `item in container`: substring of a string, item of a list (==), key of a
// dict; false for undefined. INVALID_ARGUMENT for
// other containers or a non-string left of a string.
absl::StatusOr<bool> Contains(const Value& container, const Value& item,
                              Budget& budget);

// Calls a bound method (CallableData::kMethod).
absl::StatusOr<Value> CallMethod(const Value& self, absl::string_view name,
                                 const CallArgs& args, Budget& budget);

// Global functions without interpreter state: range, raise_exception,
// strftime_now, dict. Null when `name` is none of them.
std::shared_ptr<const CallableData> FindGlobal(absl::string_view name);
absl::StatusOr<Value> CallGlobal(absl::string_view name, const CallArgs& args,
                                 Budget& budget);

// ---- Helpers shared by the built-ins ---------------------------------

// A new string / list value, spent from the budget (its size checked
// against max_output_bytes; one step per item and per 16 bytes).
absl::StatusOr<Value> NewString(std::string s, Budget& budget);
absl::StatusOr<Value> NewList(std::vector<Value> items, Budget& budget,
                              bool tuple = false);

// The argument *v as an integer (int or bool) / a string; INVALID_ARGUMENT
// naming `what` when it is absent (null) or of another type.
absl::Status IntArg(const Value* v, absl::string_view what, int64_t* out);
absl::Status StringArg(const Value* v, absl::string_view what,
                       const std::string** out);
// The truth of an optional argument.
bool ArgTruthy(const Value* v, bool otherwise);

// Jinja's attribute getter of map / selectattr / sort / ...: an integer
// indexes; "a.b.0" looks up a, then b, then index 0 (GetItem semantics).
absl::StatusOr<Value> GetPath(const Value& item, const Value& attribute,
                              Budget& budget);

// dict.items(): (key, value) tuples in the dict's order.
absl::StatusOr<Value> DictItems(const DictData& dict, Budget& budget);

// Whether `name` is a method of dicts (items, keys, values, get).
bool IsDictMethod(absl::string_view name);

// Binds call arguments to named parameters: *out[i] points at the argument
// for names[i] (positional first, then by keyword) or is null when absent.
// INVALID_ARGUMENT naming `function` for too many positional arguments, an
// unknown keyword or one given twice.
absl::Status BindArgs(absl::string_view function, const CallArgs& args,
                      const std::vector<absl::string_view>& names,
                      std::vector<const Value*>* out);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_BUILTINS_H_
