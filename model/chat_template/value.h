// Values of the chat-template interpreter (internal to //model/chat_template):
// Python's objects as Jinja templates see them. Strings, lists and dicts are
// immutable and shared (copying a Value is cheap); a namespace is the one
// mutable object and is shared by reference, as in Jinja.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_VALUE_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace jinja {

class Value;
struct ListData;
struct DictData;
struct NamespaceData;
struct CallableData;
struct LoopData;

// Bounds that every recursive operation on values (printing, tojson,
// comparison) observes, so that deep or cyclic data (a namespace holding
// itself) fails instead of overflowing the stack.
inline constexpr int kMaxValueNesting = 512;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // also tuples (ListData::tuple)
    kDict,
    kNamespace,
    kCallable,  // macros, globals, bound methods
    kLoop,      // the `loop` object of a for loop
  };

  Value() : kind_(Kind::kUndefined), i_(0) {}
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b) {
    Value v(Kind::kBool);
    v.b_ = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v(Kind::kInt);
    v.i_ = i;
    return v;
  }
  static Value Float(double f) {
    Value v(Kind::kFloat);
    v.f_ = f;
    return v;
  }
  static Value String(std::string s);
  static Value String(std::shared_ptr<const std::string> s);
  static Value List(std::shared_ptr<const ListData> list);
  static Value List(std::vector<Value> items, bool tuple = false);
  static Value Dict(std::shared_ptr<const DictData> dict);
  static Value Namespace(std::shared_ptr<NamespaceData> ns);
  static Value Callable(std::shared_ptr<const CallableData> callable);
  static Value Loop(std::shared_ptr<const LoopData> loop);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // int or bool (Python's bool is an int).
  bool is_integral() const { return is_int() || is_bool(); }
  // int, bool or float.
  bool is_number() const { return is_integral() || is_float(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool is_loop() const { return kind_ == Kind::kLoop; }

  bool bool_value() const { return b_; }
  // The integer of an int or bool.
  int64_t int_value() const { return is_bool() ? (b_ ? 1 : 0) : i_; }
  // The number of an int, bool or float as a double.
  double number_value() const {
    return is_float() ? f_ : static_cast<double>(int_value());
  }
  double float_value() const { return f_; }
  const std::string& str() const;
  std::shared_ptr<const std::string> str_ptr() const;
  const ListData& list() const;
  std::shared_ptr<const ListData> list_ptr() const;
  const DictData& dict() const;
  NamespaceData& ns() const;
  std::shared_ptr<NamespaceData> ns_ptr() const;
  const CallableData& callable() const;
  const LoopData& loop() const;
  // Identity of a shared object (namespace, callable, ...): for `sameas`.
  const void* identity() const { return ptr_.get(); }

  // Nesting: 0 for scalars, 1 + the deepest item for lists, dicts and
  // namespaces, loop objects and bound methods (as recorded when they were
  // built). Whatever builds a value checks it against kMaxValueNesting, so
  // that destroying a value never recurses deeply.
  int nesting() const;

 private:
  explicit Value(Kind kind) : kind_(kind), i_(0) {}

  Kind kind_;
  union {
    bool b_;
    int64_t i_;
    double f_;
  };
  std::shared_ptr<void> ptr_;
};

struct ListData {
  std::vector<Value> items;
  bool tuple = false;
  int nesting = 1;
  // Builds a list; `nesting` from the items.
  static std::shared_ptr<const ListData> Make(std::vector<Value> items,
                                              bool tuple = false);
};

// An insertion-ordered dict with string keys.
struct DictData {
  std::vector<std::pair<std::string, Value>> items;
  int nesting = 1;

  // The value at `key`, or nullptr.
  const Value* Find(absl::string_view key) const;
  // Sets `key` (replacing its value in place when present).
  void Set(absl::string_view key, Value value);
  size_t size() const { return items.size(); }

 private:
  // key -> position in items, kept once the dict is large.
  absl::flat_hash_map<std::string, size_t> index_;
};

// namespace(): a mutable attribute bag shared by reference.
struct NamespaceData {
  DictData attrs;
};

// The `loop` variable of one iteration.
struct LoopData {
  int64_t index0 = 0;
  int64_t length = 0;
  Value previtem;  // undefined on the first iteration
  Value nextitem;  // undefined on the last iteration
  // 1 + the nesting of previtem and nextitem.
  int nesting = 1;
};

// Converts `json` (nlohmann; objects in the order the json object holds
// them) into a Value. INVALID_ARGUMENT when nested deeper than `max_nesting`.
absl::StatusOr<Value> FromJson(const nlohmann::json& json, int max_nesting);

// The allowance of one rendering: steps (ChatTemplateLimits::max_steps) and
// the largest string it may build (max_output_bytes). The recursive
// operations below spend from it as they go, so that printing or comparing
// shared data (a list holding one big list a thousand times) stops at the
// limit instead of running away.
class Budget {
 public:
  Budget(int64_t max_steps, size_t max_bytes)
      : max_steps_(max_steps), max_bytes_(max_bytes) {}

  // Spends `n` steps: RESOURCE_EXHAUSTED naming max_steps once more than
  // max_steps have been spent.
  absl::Status Spend(int64_t n);
  // Spends the steps for handling `bytes` bytes of text (one per 16).
  absl::Status SpendBytes(size_t bytes) {
    return Spend(static_cast<int64_t>(bytes / 16));
  }
  // RESOURCE_EXHAUSTED naming max_output_bytes when a string of `bytes`
  // bytes is larger than max_output_bytes.
  absl::Status CheckSize(size_t bytes) const;
  int64_t steps() const { return steps_; }
  int64_t max_steps() const { return max_steps_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  int64_t steps_ = 0;
  int64_t max_steps_;
  size_t max_bytes_;
};

// Python's truth value.
bool Truthy(const Value& v);

// Python's type name ("str", "int", "list", ...), for error messages.
std::string TypeName(const Value& v);

// Appends str(v) as Jinja prints it to *out: strings as they are, None as
// "None", True / False, floats as Python's repr, containers as Python's repr
// ('quoted' strings inside), undefined as "". Fails for data nested deeper
// than kMaxValueNesting (a namespace holding itself) or beyond the budget.
absl::Status AppendStr(const Value& v, Budget& budget, std::string* out);
// str(v).
absl::StatusOr<std::string> ToStr(const Value& v, Budget& budget);
// repr(v) as Python writes it.
absl::StatusOr<std::string> Repr(const Value& v, Budget& budget);

// Python's ==: numbers by value (True == 1), lists and dicts by content.
absl::StatusOr<bool> Equals(const Value& a, const Value& b, Budget& budget);

// Python's ordering: -1, 0 or 1 in *result for numbers, strings (by code
// point) and lists; INVALID_ARGUMENT for types Python cannot order ("'<' not
// supported between instances of 'str' and 'int'").
absl::Status Compare(const Value& a, const Value& b, Budget& budget,
                     int* result);

// Options of the tojson filter (transformers' json.dumps signature).
struct JsonOptions {
  // With indent: items on their own lines, each level indented by `indent`.
  bool indent_set = false;
  std::string indent;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator = ", ";  // the caller sets "," when indenting
  std::string key_separator = ": ";
};

// Appends json.dumps(v) to *out for None, bools, numbers, strings, lists,
// tuples and dicts; INVALID_ARGUMENT "... is not JSON serializable" for the
// others (undefined, namespaces, callables, the loop object).
absl::Status AppendJson(const Value& v, const JsonOptions& options,
                        Budget& budget, std::string* out);

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_VALUE_H_
