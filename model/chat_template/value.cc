#include "model/chat_template/value.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/chat_template/builtins.h"
#include "model/chat_template/text_util.h"

namespace longctx {
namespace jinja {
namespace {

// Dicts at least this large keep a hash index of their keys.
constexpr size_t kIndexThreshold = 12;

absl::Status TooDeep() {
  return absl::InvalidArgumentError(
      absl::StrCat("value nested deeper than ", kMaxValueNesting,
                   " levels (or a namespace that contains itself)"));
}

}  // namespace

Value Value::String(std::string s) {
  return String(std::make_shared<const std::string>(std::move(s)));
}

Value Value::String(std::shared_ptr<const std::string> s) {
  Value v(Kind::kString);
  v.ptr_ = std::const_pointer_cast<std::string>(std::move(s));
  return v;
}

Value Value::List(std::shared_ptr<const ListData> list) {
  Value v(Kind::kList);
  v.ptr_ = std::const_pointer_cast<ListData>(std::move(list));
  return v;
}

Value Value::List(std::vector<Value> items, bool tuple) {
  return List(ListData::Make(std::move(items), tuple));
}

Value Value::Dict(std::shared_ptr<const DictData> dict) {
  Value v(Kind::kDict);
  v.ptr_ = std::const_pointer_cast<DictData>(std::move(dict));
  return v;
}

Value Value::Namespace(std::shared_ptr<NamespaceData> ns) {
  Value v(Kind::kNamespace);
  v.ptr_ = std::move(ns);
  return v;
}

Value Value::Callable(std::shared_ptr<const CallableData> callable) {
  Value v(Kind::kCallable);
  v.ptr_ = std::const_pointer_cast<CallableData>(std::move(callable));
  return v;
}

Value Value::Loop(std::shared_ptr<const LoopData> loop) {
  Value v(Kind::kLoop);
  v.ptr_ = std::const_pointer_cast<LoopData>(std::move(loop));
  return v;
}

const std::string& Value::str() const {
  return *static_cast<const std::string*>(ptr_.get());
}

std::shared_ptr<const std::string> Value::str_ptr() const {
  return std::static_pointer_cast<const std::string>(ptr_);
}

const ListData& Value::list() const {
  return *static_cast<const ListData*>(ptr_.get());
}

std::shared_ptr<const ListData> Value::list_ptr() const {
  return std::static_pointer_cast<const ListData>(ptr_);
}

const DictData& Value::dict() const {
  return *static_cast<const DictData*>(ptr_.get());
}

NamespaceData& Value::ns() const {
  return *static_cast<NamespaceData*>(ptr_.get());
}

std::shared_ptr<NamespaceData> Value::ns_ptr() const {
  return std::static_pointer_cast<NamespaceData>(ptr_);
}

const CallableData& Value::callable() const {
  return *static_cast<const CallableData*>(ptr_.get());
}

const LoopData& Value::loop() const {
  return *static_cast<const LoopData*>(ptr_.get());
}

int Value::nesting() const {
  switch (kind_) {
    case Kind::kList:
      return list().nesting;
    case Kind::kDict:
      return dict().nesting;
    case Kind::kNamespace:
      return ns().attrs.nesting;
    case Kind::kLoop:
      return loop().nesting;
    case Kind::kCallable:
      return callable().nesting;
    default:
      return 0;
  }
}

std::shared_ptr<const ListData> ListData::Make(std::vector<Value> items,
                                               bool tuple) {
  auto list = std::make_shared<ListData>();
  int deepest = 0;
  for (const Value& item : items) deepest = std::max(deepest, item.nesting());
  list->items = std::move(items);
  list->tuple = tuple;
  list->nesting = deepest + 1;
  return list;
}

const Value* DictData::Find(absl::string_view key) const {
  if (!index_.empty()) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items[it->second].second;
  }
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void DictData::Set(absl::string_view key, Value value) {
  nesting = std::max(nesting, value.nesting() + 1);
  if (!index_.empty()) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      items[it->second].second = std::move(value);
      return;
    }
    index_.emplace(std::string(key), items.size());
    items.emplace_back(std::string(key), std::move(value));
    return;
  }
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::string(key), std::move(value));
  if (items.size() >= kIndexThreshold) {
    for (size_t i = 0; i < items.size(); ++i) index_[items[i].first] = i;
  }
}

absl::StatusOr<Value> FromJson(const nlohmann::json& json, int max_nesting) {
  if (max_nesting < 0) {
    return absl::InvalidArgumentError(
        "chat template context nested too deeply");
  }
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(json.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(json.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) {
        return Value::Float(static_cast<double>(u));
      }
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(json.get<double>());
    case nlohmann::json::value_t::string:
      return Value::String(json.get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const nlohmann::json& item : json) {
        absl::StatusOr<Value> v = FromJson(item, max_nesting - 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::List(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto dict = std::make_shared<DictData>();
      for (auto it = json.begin(); it != json.end(); ++it) {
        absl::StatusOr<Value> v = FromJson(it.value(), max_nesting - 1);
        if (!v.ok()) return v.status();
        dict->Set(it.key(), *std::move(v));
      }
      return Value::Dict(std::move(dict));
    }
    case nlohmann::json::value_t::binary:
    case nlohmann::json::value_t::discarded:
      break;
  }
  return absl::InvalidArgumentError(
      "chat template context holds a value that is not JSON");
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.bool_value();
    case Value::Kind::kInt:
      return v.int_value() != 0;
    case Value::Kind::kFloat:
      return v.float_value() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return !v.list().items.empty();
    case Value::Kind::kDict:
      return v.dict().size() != 0;
    case Value::Kind::kNamespace:
    case Value::Kind::kCallable:
    case Value::Kind::kLoop:
      return true;
  }
  return false;
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.list().tuple ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kCallable:
      return "function";
    case Value::Kind::kLoop:
      return "LoopContext";
  }
  return "object";
}

absl::Status Budget::Spend(int64_t n) {
  steps_ += n;
  if (steps_ > max_steps_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "chat template rendering exceeded max_steps (", max_steps_, ")"));
  }
  return absl::OkStatus();
}

absl::Status Budget::CheckSize(size_t bytes) const {
  if (bytes > max_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("chat template rendering exceeded max_output_bytes (",
                     max_bytes_, ")"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status AppendRepr(const Value& v, bool top_level_str, int depth,
                        Budget& budget, std::string* out);

// Spends one step for a value and checks the size of what was written.
absl::Status Visit(int depth, Budget& budget, const std::string& out) {
  if (depth > kMaxValueNesting) return TooDeep();
  absl::Status s = budget.Spend(1);
  if (!s.ok()) return s;
  return budget.CheckSize(out.size());
}

absl::Status AppendDictRepr(const DictData& dict, int depth, Budget& budget,
                            std::string* out) {
  out->push_back('{');
  bool first = true;
  for (const auto& [k, item] : dict.items) {
    if (!first) out->append(", ");
    first = false;
    AppendPyStrRepr(k, out);
    out->append(": ");
    absl::Status s = AppendRepr(item, false, depth + 1, budget, out);
    if (!s.ok()) return s;
  }
  out->push_back('}');
  return absl::OkStatus();
}

absl::Status AppendRepr(const Value& v, bool top_level_str, int depth,
                        Budget& budget, std::string* out) {
  absl::Status visit = Visit(depth, budget, *out);
  if (!visit.ok()) return visit;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      // Printed as "", but as Undefined inside a container (Python's repr).
      if (!top_level_str) out->append("Undefined");
      return absl::OkStatus();
    case Value::Kind::kNone:
      out->append("None");
      return absl::OkStatus();
    case Value::Kind::kBool:
      out->append(v.bool_value() ? "True" : "False");
      return absl::OkStatus();
    case Value::Kind::kInt:
      absl::StrAppend(out, v.int_value());
      return absl::OkStatus();
    case Value::Kind::kFloat:
      out->append(PyFloatRepr(v.float_value()));
      return absl::OkStatus();
    case Value::Kind::kString: {
      absl::Status s = budget.SpendBytes(v.str().size());
      if (!s.ok()) return s;
      s = budget.CheckSize(out->size() + v.str().size());
      if (!s.ok()) return s;
      if (top_level_str) {
        out->append(v.str());
      } else {
        AppendPyStrRepr(v.str(), out);
      }
      return absl::OkStatus();
    }
    case Value::Kind::kList: {
      const ListData& list = v.list();
      out->push_back(list.tuple ? '(' : '[');
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i > 0) out->append(", ");
        absl::Status s =
            AppendRepr(list.items[i], false, depth + 1, budget, out);
        if (!s.ok()) return s;
      }
      if (list.tuple && list.items.size() == 1) out->push_back(',');
      out->push_back(list.tuple ? ')' : ']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict:
      return AppendDictRepr(v.dict(), depth, budget, out);
    case Value::Kind::kNamespace: {
      out->append("<Namespace ");
      absl::Status s = AppendDictRepr(v.ns().attrs, depth, budget, out);
      if (!s.ok()) return s;
      out->push_back('>');
      return absl::OkStatus();
    }
    case Value::Kind::kCallable:
      out->append("<function>");
      return absl::OkStatus();
    case Value::Kind::kLoop: {
      const LoopData& loop = v.loop();
      absl::StrAppend(out, "<LoopContext ", loop.index0 + 1, "/", loop.length,
                      ">");
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> EqualsAt(const Value& a, const Value& b, int depth,
                              Budget& budget) {
  if (depth > kMaxValueNesting) return TooDeep();
  absl::Status spent = budget.Spend(1);
  if (!spent.ok()) return spent;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      return a.number_value() == b.number_value();
    }
    return a.int_value() == b.int_value();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString: {
      if (a.str().size() != b.str().size()) return false;
      absl::Status s = budget.SpendBytes(a.str().size());
      if (!s.ok()) return s;
      return a.str() == b.str();
    }
    case Value::Kind::kList: {
      const ListData& x = a.list();
      const ListData& y = b.list();
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        absl::StatusOr<bool> eq =
            EqualsAt(x.items[i], y.items[i], depth + 1, budget);
        if (!eq.ok() || !*eq) return eq;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.Find(k);
        if (other == nullptr) return false;
        absl::StatusOr<bool> eq = EqualsAt(v, *other, depth + 1, budget);
        if (!eq.ok() || !*eq) return eq;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

absl::Status CompareAt(const Value& a, const Value& b, int depth,
                       Budget& budget, int* result) {
  if (depth > kMaxValueNesting) return TooDeep();
  absl::Status spent = budget.Spend(1);
  if (!spent.ok()) return spent;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.number_value();
      const double y = b.number_value();
      *result = x < y ? -1 : (x > y ? 1 : 0);
    } else {
      const int64_t x = a.int_value();
      const int64_t y = b.int_value();
      *result = x < y ? -1 : (x > y ? 1 : 0);
    }
    return absl::OkStatus();
  }
  if (a.is_string() && b.is_string()) {
    absl::Status s =
        budget.SpendBytes(std::min(a.str().size(), b.str().size()));
    if (!s.ok()) return s;
    const int c = a.str().compare(b.str());
    *result = c < 0 ? -1 : (c > 0 ? 1 : 0);
    return absl::OkStatus();
  }
  if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      absl::StatusOr<bool> eq = EqualsAt(x[i], y[i], depth + 1, budget);
      if (!eq.ok()) return eq.status();
      if (*eq) continue;
      return CompareAt(x[i], y[i], depth + 1, budget, result);
    }
    *result = x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'<' not supported between instances of '", TypeName(a),
                   "' and '", TypeName(b), "'"));
}

absl::Status AppendJsonAt(const Value& v, const JsonOptions& options, int depth,
                          Budget& budget, std::string* out) {
  absl::Status visit = Visit(depth, budget, *out);
  if (!visit.ok()) return visit;
  auto newline = [&](int level) {
    out->push_back('\n');
    for (int i = 0; i < level; ++i) out->append(options.indent);
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      return absl::OkStatus();
    case Value::Kind::kBool:
      out->append(v.bool_value() ? "true" : "false");
      return absl::OkStatus();
    case Value::Kind::kInt:
      absl::StrAppend(out, v.int_value());
      return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double d = v.float_value();
      if (std::isnan(d)) {
        out->append("NaN");
      } else if (std::isinf(d)) {
        out->append(d > 0 ? "Infinity" : "-Infinity");
      } else {
        out->append(PyFloatRepr(d));
      }
      return absl::OkStatus();
    }
    case Value::Kind::kString: {
      absl::Status s = budget.SpendBytes(v.str().size());
      if (!s.ok()) return s;
      s = budget.CheckSize(out->size() + v.str().size());
      if (!s.ok()) return s;
      AppendJsonString(v.str(), options.ensure_ascii, out);
      return absl::OkStatus();
    }
    case Value::Kind::kList: {
      const auto& items = v.list().items;
      if (items.empty()) {
        out->append("[]");
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out->append(options.item_separator);
        if (options.indent_set) newline(depth + 1);
        absl::Status s =
            AppendJsonAt(items[i], options, depth + 1, budget, out);
        if (!s.ok()) return s;
      }
      if (options.indent_set) newline(depth);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      const DictData& dict = v.dict();
      if (dict.size() == 0) {
        out->append("{}");
        return absl::OkStatus();
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      entries.reserve(dict.size());
      for (const auto& entry : dict.items) entries.push_back(&entry);
      if (options.sort_keys) {
        std::stable_sort(
            entries.begin(), entries.end(),
            [](const auto* x, const auto* y) { return x->first < y->first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out->append(options.item_separator);
        if (options.indent_set) newline(depth + 1);
        AppendJsonString(entries[i]->first, options.ensure_ascii, out);
        out->append(options.key_separator);
        absl::Status s =
            AppendJsonAt(entries[i]->second, options, depth + 1, budget, out);
        if (!s.ok()) return s;
      }
      if (options.indent_set) newline(depth);
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tojson: Object of type ", TypeName(v), " is not JSON serializable"));
  }
}

}  // namespace

absl::Status AppendStr(const Value& v, Budget& budget, std::string* out) {
  return AppendRepr(v, true, 0, budget, out);
}

absl::StatusOr<std::string> ToStr(const Value& v, Budget& budget) {
  if (v.is_string()) return v.str();
  std::string out;
  absl::Status s = AppendRepr(v, true, 0, budget, &out);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> Repr(const Value& v, Budget& budget) {
  std::string out;
  absl::Status s = AppendRepr(v, false, 0, budget, &out);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<bool> Equals(const Value& a, const Value& b, Budget& budget) {
  return EqualsAt(a, b, 0, budget);
}

absl::Status Compare(const Value& a, const Value& b, Budget& budget,
                     int* result) {
  return CompareAt(a, b, 0, budget, result);
}

absl::Status AppendJson(const Value& v, const JsonOptions& options,
                        Budget& budget, std::string* out) {
  return AppendJsonAt(v, options, 0, budget, out);
}

}  // namespace jinja
}  // namespace longctx
