#include "model/chat_template/builtins.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/text_util.h"
#include "model/hf_tokenizer/utf8.h"
#include "unicode/uchar.h"

namespace longctx {
namespace jinja {
namespace {

absl::Status Error(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

bool IsStringMethod(absl::string_view name) {
  static constexpr absl::string_view kMethods[] = {
      "strip",   "lstrip",     "rstrip",     "startswith", "endswith",
      "split",   "rsplit",     "splitlines", "upper",      "lower",
      "title",   "capitalize", "replace",    "format",     "join",
      "find",    "count",      "isdigit",    "isalpha",    "isalnum",
      "isspace", "islower",    "isupper"};
  for (absl::string_view m : kMethods) {
    if (m == name) return true;
  }
  return false;
}

Value BoundMethod(const Value& self, absl::string_view name) {
  auto callable = std::make_shared<CallableData>();
  callable->type = CallableData::Type::kMethod;
  callable->name = std::string(name);
  callable->self = self;
  callable->nesting = self.nesting() + 1;
  return Value::Callable(std::move(callable));
}

// ---- Strings ---------------------------------------------------------

std::vector<std::string> SplitBy(absl::string_view s, absl::string_view sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    if (at == absl::string_view::npos) {
      parts.emplace_back(s.substr(start));
      return parts;
    }
    parts.emplace_back(s.substr(start, at - start));
    start = at + sep.size();
  }
}

std::string PyReplace(absl::string_view s, absl::string_view old,
                      absl::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Inserted before every character and at the end.
    const std::vector<size_t> offsets = CharOffsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        absl::StrAppend(&out, replacement);
        ++done;
      }
      absl::StrAppend(&out, s.substr(offsets[i], offsets[i + 1] - offsets[i]));
    }
    if (count < 0 || done < count) absl::StrAppend(&out, replacement);
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, start);
    if (at == absl::string_view::npos) break;
    absl::StrAppend(&out, s.substr(start, at - start));
    absl::StrAppend(&out, replacement);
    start = at + old.size();
    ++done;
  }
  absl::StrAppend(&out, s.substr(start));
  return out;
}

// str.format: {} {0} {name}, {{ }}, conversions !s !r; no format specs.
absl::StatusOr<std::string> PyFormat(absl::string_view format,
                                     const CallArgs& args, Budget& budget) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return Error("format: single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == absl::string_view::npos) {
      return Error("format: single '{' encountered in format string");
    }
    absl::string_view field = format.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    const size_t bang = field.find('!');
    if (bang != absl::string_view::npos) {
      if (bang + 2 != field.size() ||
          (field[bang + 1] != 's' && field[bang + 1] != 'r')) {
        return Error("format: unsupported conversion");
      }
      conversion = field[bang + 1];
      field = field.substr(0, bang);
    }
    if (field.find(':') != absl::string_view::npos) {
      return Error("format: format specifications are not supported");
    }
    const Value* value = nullptr;
    if (field.empty()) {
      if (auto_index >= args.positional.size()) {
        return Error("format: replacement index out of range");
      }
      value = &args.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(),
                           [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t index =
          std::strtoul(std::string(field).c_str(), nullptr, 10);
      if (field.size() > 9 || index >= args.positional.size()) {
        return Error("format: replacement index out of range");
      }
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      if (value == nullptr) {
        return Error(absl::StrCat("format: no argument named '", field, "'"));
      }
    }
    absl::StatusOr<std::string> text =
        conversion == 'r' ? Repr(*value, budget) : ToStr(*value, budget);
    if (!text.ok()) return text.status();
    out += *text;
    absl::Status size = budget.CheckSize(out.size());
    if (!size.ok()) return size;
  }
  return out;
}

// rsplit with a separator or on whitespace.
std::vector<std::string> PyRSplit(absl::string_view s, const std::string* sep,
                                  int64_t maxsplit) {
  if (sep != nullptr) {
    std::vector<std::string> parts = SplitBy(s, *sep);
    if (maxsplit < 0 || static_cast<int64_t>(parts.size()) <= maxsplit + 1) {
      return parts;
    }
    const size_t keep = parts.size() - static_cast<size_t>(maxsplit);
    std::vector<std::string> out;
    out.push_back(absl::StrJoin(parts.begin(), parts.begin() + keep, *sep));
    out.insert(out.end(), parts.begin() + keep, parts.end());
    return out;
  }
  const std::vector<size_t> offsets = CharOffsets(s);
  auto space_at = [&](size_t i) {
    char32_t c;
    DecodeUtf8Char(s.substr(offsets[i]), &c);
    return IsPySpace(c);
  };
  std::vector<std::string> parts;
  size_t end = offsets.size() - 1;  // characters [0, end)
  while (end > 0 && space_at(end - 1)) --end;
  while (end > 0) {
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
      parts.emplace_back(s.substr(0, offsets[end]));
      break;
    }
    size_t start = end;
    while (start > 0 && !space_at(start - 1)) --start;
    parts.emplace_back(s.substr(offsets[start], offsets[end] - offsets[start]));
    end = start;
    while (end > 0 && space_at(end - 1)) --end;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

template <typename Pred>
bool AllChars(absl::string_view s, Pred pred) {
  if (s.empty()) return false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    pos += DecodeUtf8Char(s.substr(pos), &c);
    if (!pred(c)) return false;
  }
  return true;
}

absl::StatusOr<Value> StringList(std::vector<std::string> parts,
                                 Budget& budget) {
  std::vector<Value> items;
  items.reserve(parts.size());
  size_t bytes = 0;
  for (std::string& p : parts) {
    bytes += p.size();
    items.push_back(Value::String(std::move(p)));
  }
  absl::Status s = budget.SpendBytes(bytes);
  if (!s.ok()) return s;
  return NewList(std::move(items), budget);
}

absl::StatusOr<Value> CallStringMethod(const std::string& self,
                                       absl::string_view name,
                                       const CallArgs& args, Budget& budget) {
  absl::Status spent = budget.SpendBytes(self.size());
  if (!spent.ok()) return spent;
  std::vector<const Value*> a;
  auto bind = [&](std::vector<absl::string_view> names) {
    return BindArgs(absl::StrCat("str.", name), args, names, &a);
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    absl::Status s = bind({"chars"});
    if (!s.ok()) return s;
    const std::string* chars = nullptr;
    if (a[0] != nullptr && !a[0]->is_none()) {
      s = StringArg(a[0], "strip chars", &chars);
      if (!s.ok()) return s;
    }
    return NewString(PyStrip(self, chars, name != "rstrip", name != "lstrip"),
                     budget);
  }
  if (name == "startswith" || name == "endswith") {
    absl::Status s = bind({"prefix"});
    if (!s.ok()) return s;
    std::vector<const std::string*> candidates;
    if (a[0] != nullptr && a[0]->is_list()) {
      for (const Value& item : a[0]->list().items) {
        if (!item.is_string()) {
          return Error(absl::StrCat(name, ": tuple items must be strings"));
        }
        candidates.push_back(&item.str());
      }
    } else {
      const std::string* prefix = nullptr;
      s = StringArg(a[0], absl::StrCat(name, " argument"), &prefix);
      if (!s.ok()) return s;
      candidates.push_back(prefix);
    }
    for (const std::string* c : candidates) {
      const bool match = name == "startswith" ? absl::StartsWith(self, *c)
                                              : absl::EndsWith(self, *c);
      if (match) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "split" || name == "rsplit") {
    absl::Status s = bind({"sep", "maxsplit"});
    if (!s.ok()) return s;
    int64_t maxsplit = -1;
    if (a[1] != nullptr) {
      s = IntArg(a[1], "maxsplit", &maxsplit);
      if (!s.ok()) return s;
    }
    const std::string* sep = nullptr;
    if (a[0] != nullptr && !a[0]->is_none()) {
      s = StringArg(a[0], "sep", &sep);
      if (!s.ok()) return s;
      if (sep->empty()) return Error("split: empty separator");
    }
    if (name == "rsplit")
      return StringList(PyRSplit(self, sep, maxsplit), budget);
    if (sep == nullptr) {
      return StringList(PySplitWhitespace(self, maxsplit), budget);
    }
    std::vector<std::string> parts = SplitBy(self, *sep);
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) > maxsplit + 1) {
      std::vector<std::string> out(parts.begin(), parts.begin() + maxsplit);
      out.push_back(absl::StrJoin(parts.begin() + maxsplit, parts.end(), *sep));
      parts = std::move(out);
    }
    return StringList(std::move(parts), budget);
  }
  if (name == "splitlines") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    return StringList(PySplitLines(self), budget);
  }
  if (name == "upper" || name == "lower" || name == "title" ||
      name == "capitalize") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    if (name == "upper") return NewString(PyUpper(self), budget);
    if (name == "lower") return NewString(PyLower(self), budget);
    if (name == "title") return NewString(PyTitle(self), budget);
    return NewString(PyCapitalize(self), budget);
  }
  if (name == "replace") {
    absl::Status s = bind({"old", "new", "count"});
    if (!s.ok()) return s;
    const std::string* old_text = nullptr;
    const std::string* new_text = nullptr;
    s = StringArg(a[0], "replace old", &old_text);
    if (!s.ok()) return s;
    s = StringArg(a[1], "replace new", &new_text);
    if (!s.ok()) return s;
    int64_t count = -1;
    if (a[2] != nullptr && !a[2]->is_none()) {
      s = IntArg(a[2], "replace count", &count);
      if (!s.ok()) return s;
    }
    // Bound the result before building it.
    size_t matches = 0;
    if (old_text->empty()) {
      matches = CharCount(self) + 1;
    } else {
      for (size_t at = self.find(*old_text); at != std::string::npos;
           at = self.find(*old_text, at + old_text->size())) {
        ++matches;
      }
    }
    if (count >= 0) matches = std::min<size_t>(matches, count);
    if (new_text->size() > old_text->size() && matches > 0) {
      const size_t growth = new_text->size() - old_text->size();
      const size_t room =
          budget.max_bytes() - std::min(budget.max_bytes(), self.size());
      if (growth > room / matches) return budget.CheckSize(SIZE_MAX);
    }
    return NewString(PyReplace(self, *old_text, *new_text, count), budget);
  }
  if (name == "format") {
    absl::StatusOr<std::string> out = PyFormat(self, args, budget);
    if (!out.ok()) return out.status();
    return NewString(*std::move(out), budget);
  }
  if (name == "join") {
    absl::Status s = bind({"iterable"});
    if (!s.ok()) return s;
    if (a[0] == nullptr) return Error("str.join: missing the iterable");
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(*a[0], budget);
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < (*items)->items.size(); ++i) {
      const Value& item = (*items)->items[i];
      if (!item.is_string()) {
        return Error(absl::StrCat("str.join: sequence item ", i,
                                  ": expected str instance, ", TypeName(item),
                                  " found"));
      }
      if (i > 0) out += self;
      out += item.str();
      s = budget.CheckSize(out.size());
      if (!s.ok()) return s;
    }
    return NewString(std::move(out), budget);
  }
  if (name == "find" || name == "count") {
    absl::Status s = bind({"sub"});
    if (!s.ok()) return s;
    const std::string* sub = nullptr;
    s = StringArg(a[0], absl::StrCat(name, " argument"), &sub);
    if (!s.ok()) return s;
    if (name == "find") {
      const size_t at = self.find(*sub);
      if (at == std::string::npos) return Value::Int(-1);
      return Value::Int(static_cast<int64_t>(CharCount(self.substr(0, at))));
    }
    if (sub->empty()) {
      return Value::Int(static_cast<int64_t>(CharCount(self) + 1));
    }
    int64_t n = 0;
    for (size_t at = self.find(*sub); at != std::string::npos;
         at = self.find(*sub, at + sub->size())) {
      ++n;
    }
    return Value::Int(n);
  }
  absl::Status s = bind({});
  if (!s.ok()) return s;
  if (name == "isdigit") {
    return Value::Bool(AllChars(self, [](char32_t c) { return u_isdigit(c); }));
  }
  if (name == "isalpha") {
    return Value::Bool(AllChars(self, [](char32_t c) { return u_isalpha(c); }));
  }
  if (name == "isalnum") {
    return Value::Bool(AllChars(self, [](char32_t c) { return u_isalnum(c); }));
  }
  if (name == "isspace") {
    return Value::Bool(AllChars(self, IsPySpace));
  }
  if (name == "islower") return Value::Bool(PyIsLower(self));
  if (name == "isupper") return Value::Bool(PyIsUpper(self));
  return Error(absl::StrCat("'str' object has no method '", name, "'"));
}

absl::StatusOr<Value> CallDictMethod(const DictData& dict,
                                     absl::string_view name,
                                     const CallArgs& args, Budget& budget) {
  std::vector<const Value*> a;
  if (name == "get") {
    absl::Status s = BindArgs("dict.get", args, {"key", "default"}, &a);
    if (!s.ok()) return s;
    if (a[0] == nullptr) return Error("dict.get: missing the key");
    if (a[0]->is_string()) {
      const Value* found = dict.Find(a[0]->str());
      if (found != nullptr) return *found;
    }
    return a[1] != nullptr ? *a[1] : Value::None();
  }
  absl::Status s = BindArgs(absl::StrCat("dict.", name), args, {}, &a);
  if (!s.ok()) return s;
  if (name == "items") return DictItems(dict, budget);
  std::vector<Value> items;
  items.reserve(dict.size());
  for (const auto& [k, v] : dict.items) {
    items.push_back(name == "keys" ? Value::String(k) : v);
  }
  return NewList(std::move(items), budget);
}

}  // namespace

bool IsDictMethod(absl::string_view name) {
  return name == "items" || name == "keys" || name == "values" || name == "get";
}

absl::StatusOr<Value> NewString(std::string s, Budget& budget) {
  absl::Status status = budget.CheckSize(s.size());
  if (!status.ok()) return status;
  status = budget.SpendBytes(s.size());
  if (!status.ok()) return status;
  return Value::String(std::move(s));
}

absl::StatusOr<Value> NewList(std::vector<Value> items, Budget& budget,
                              bool tuple) {
  absl::Status status = budget.Spend(static_cast<int64_t>(items.size()));
  if (!status.ok()) return status;
  std::shared_ptr<const ListData> list =
      ListData::Make(std::move(items), tuple);
  if (list->nesting > kMaxValueNesting) {
    return Error("value nested too deeply");
  }
  return Value::List(std::move(list));
}

absl::Status IntArg(const Value* v, absl::string_view what, int64_t* out) {
  if (v == nullptr || !v->is_integral()) {
    return Error(absl::StrCat(what, " must be an integer, not '",
                              v == nullptr ? "nothing" : TypeName(*v), "'"));
  }
  *out = v->int_value();
  return absl::OkStatus();
}

absl::Status StringArg(const Value* v, absl::string_view what,
                       const std::string** out) {
  if (v == nullptr || !v->is_string()) {
    return Error(absl::StrCat(what, " must be a string, not '",
                              v == nullptr ? "nothing" : TypeName(*v), "'"));
  }
  *out = &v->str();
  return absl::OkStatus();
}

bool ArgTruthy(const Value* v, bool otherwise) {
  return v == nullptr ? otherwise : Truthy(*v);
}

absl::StatusOr<Value> GetPath(const Value& item, const Value& attribute,
                              Budget& budget) {
  if (attribute.is_integral()) return GetItem(item, attribute, budget);
  if (!attribute.is_string()) {
    return Error("attribute must be a string or an integer");
  }
  Value current = item;
  absl::string_view path = attribute.str();
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    absl::string_view part = path.substr(start, dot == absl::string_view::npos
                                                    ? absl::string_view::npos
                                                    : dot - start);
    Value key = Value::String(std::string(part));
    if (!part.empty() &&
        std::all_of(part.begin(), part.end(),
                    [](char c) { return c >= '0' && c <= '9'; }) &&
        part.size() < 18) {
      key = Value::Int(std::strtoll(std::string(part).c_str(), nullptr, 10));
    }
    absl::StatusOr<Value> next = GetItem(current, key, budget);
    if (!next.ok()) return next.status();
    current = *std::move(next);
    if (dot == absl::string_view::npos) break;
    start = dot + 1;
  }
  return current;
}

absl::StatusOr<Value> DictItems(const DictData& dict, Budget& budget) {
  std::vector<Value> items;
  items.reserve(dict.size());
  for (const auto& [k, v] : dict.items) {
    std::vector<Value> pair = {Value::String(k), v};
    absl::StatusOr<Value> tuple = NewList(std::move(pair), budget, true);
    if (!tuple.ok()) return tuple.status();
    items.push_back(*std::move(tuple));
  }
  return NewList(std::move(items), budget);
}

absl::Status BindArgs(absl::string_view function, const CallArgs& args,
                      const std::vector<absl::string_view>& names,
                      std::vector<const Value*>* out) {
  out->assign(names.size(), nullptr);
  if (args.positional.size() > names.size()) {
    return Error(absl::StrCat(function, "() takes at most ", names.size(),
                              " argument(s) (", args.positional.size(),
                              " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    (*out)[i] = &args.positional[i];
  }
  for (const auto& [name, value] : args.keyword) {
    bool bound = false;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != name) continue;
      if ((*out)[i] != nullptr) {
        return Error(
            absl::StrCat(function, "() got multiple values for '", name, "'"));
      }
      (*out)[i] = &value;
      bound = true;
    }
    if (!bound) {
      return Error(absl::StrCat(
          function, "() got an unexpected keyword argument '", name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ListData>> AsSequence(const Value& v,
                                                           Budget& budget) {
  switch (v.kind()) {
    case Value::Kind::kList:
      return v.list_ptr();
    case Value::Kind::kString: {
      const std::vector<size_t> offsets = CharOffsets(v.str());
      std::vector<Value> chars;
      chars.reserve(offsets.size() - 1);
      for (size_t i = 0; i + 1 < offsets.size(); ++i) {
        chars.push_back(Value::String(
            v.str().substr(offsets[i], offsets[i + 1] - offsets[i])));
      }
      absl::Status s = budget.Spend(static_cast<int64_t>(chars.size()));
      if (!s.ok()) return s;
      return ListData::Make(std::move(chars));
    }
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().size());
      for (const auto& [k, item] : v.dict().items) {
        keys.push_back(Value::String(k));
      }
      absl::Status s = budget.Spend(static_cast<int64_t>(keys.size()));
      if (!s.ok()) return s;
      return ListData::Make(std::move(keys));
    }
    case Value::Kind::kUndefined:
      return Error("cannot iterate over an undefined value");
    default:
      return Error(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

Value GetAttr(const Value& obj, absl::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kDict: {
      if (IsDictMethod(name)) return BoundMethod(obj, name);
      const Value* found = obj.dict().Find(name);
      return found != nullptr ? *found : Value();
    }
    case Value::Kind::kNamespace: {
      const Value* found = obj.ns().attrs.Find(name);
      return found != nullptr ? *found : Value();
    }
    case Value::Kind::kString:
      if (IsStringMethod(name)) return BoundMethod(obj, name);
      return Value();
    case Value::Kind::kLoop: {
      const LoopData& loop = obj.loop();
      if (name == "index") return Value::Int(loop.index0 + 1);
      if (name == "index0") return Value::Int(loop.index0);
      if (name == "revindex") return Value::Int(loop.length - loop.index0);
      if (name == "revindex0") {
        return Value::Int(loop.length - loop.index0 - 1);
      }
      if (name == "first") return Value::Bool(loop.index0 == 0);
      if (name == "last") return Value::Bool(loop.index0 == loop.length - 1);
      if (name == "length") return Value::Int(loop.length);
      if (name == "previtem") return loop.previtem;
      if (name == "nextitem") return loop.nextitem;
      if (name == "depth") return Value::Int(1);
      if (name == "depth0") return Value::Int(0);
      if (name == "cycle") return BoundMethod(obj, name);
      return Value();
    }
    default:
      return Value();
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key,
                              Budget& budget) {
  switch (obj.kind()) {
    case Value::Kind::kList: {
      if (!key.is_integral()) {
        return key.is_string() ? GetAttr(obj, key.str()) : Value();
      }
      const auto& items = obj.list().items;
      int64_t i = key.int_value();
      const int64_t n = static_cast<int64_t>(items.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      return items[static_cast<size_t>(i)];
    }
    case Value::Kind::kString: {
      if (!key.is_integral()) {
        return key.is_string() ? GetAttr(obj, key.str()) : Value();
      }
      absl::Status s = budget.SpendBytes(obj.str().size());
      if (!s.ok()) return s;
      const std::string& str = obj.str();
      const bool ascii = IsAscii(str);
      const int64_t n =
          static_cast<int64_t>(ascii ? str.size() : CharCount(str));
      int64_t i = key.int_value();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      if (ascii) return Value::String(str.substr(i, 1));
      size_t pos = 0;
      for (int64_t k = 0; k < i; ++k) {
        char32_t c;
        pos += DecodeUtf8Char(absl::string_view(str).substr(pos), &c);
      }
      char32_t c;
      const size_t len = DecodeUtf8Char(absl::string_view(str).substr(pos), &c);
      return Value::String(str.substr(pos, len));
    }
    case Value::Kind::kDict: {
      if (!key.is_string()) return Value();
      const Value* found = obj.dict().Find(key.str());
      if (found != nullptr) return *found;
      return GetAttr(obj, key.str());
    }
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
      if (!key.is_string()) return Value();
      return GetAttr(obj, key.str());
    default:
      return Value();
  }
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start_value,
                               const Value& stop_value, const Value& step_value,
                               Budget& budget) {
  auto bound = [](const Value& v, bool* given, int64_t* out) -> absl::Status {
    if (v.is_none() || v.is_undefined()) {
      *given = false;
      return absl::OkStatus();
    }
    if (!v.is_integral()) {
      return Error("slice indices must be integers or None");
    }
    *given = true;
    *out = v.int_value();
    return absl::OkStatus();
  };
  bool has_start = false, has_stop = false, has_step = false;
  int64_t start = 0, stop = 0, step = 1;
  absl::Status s = bound(start_value, &has_start, &start);
  if (s.ok()) s = bound(stop_value, &has_stop, &stop);
  if (s.ok()) s = bound(step_value, &has_step, &step);
  if (!s.ok()) return s;
  if (!has_step) step = 1;
  if (step == 0) return Error("slice step cannot be zero");
  if (step < -INT64_MAX) step = -INT64_MAX;

  std::vector<size_t> offsets;
  int64_t length;
  if (obj.is_list()) {
    length = static_cast<int64_t>(obj.list().items.size());
  } else if (obj.is_string()) {
    s = budget.SpendBytes(obj.str().size());
    if (!s.ok()) return s;
    if (IsAscii(obj.str())) {
      length = static_cast<int64_t>(obj.str().size());
    } else {
      offsets = CharOffsets(obj.str());
      length = static_cast<int64_t>(offsets.size()) - 1;
    }
  } else if (obj.is_undefined()) {
    return Value();
  } else {
    return Error(absl::StrCat("'", TypeName(obj), "' object is not sliceable"));
  }
  auto adjust = [&](bool given, int64_t v, int64_t fallback) {
    if (!given) return fallback;
    if (v < 0) {
      v += length;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= length) {
      v = step < 0 ? length - 1 : length;
    }
    return v;
  };
  start = adjust(has_start, start, step < 0 ? length - 1 : 0);
  stop = adjust(has_stop, stop, step < 0 ? -1 : length);
  int64_t count = 0;
  if (step > 0 && start < stop) {
    count = (stop - start - 1) / step + 1;
  } else if (step < 0 && stop < start) {
    count = (start - stop - 1) / -step + 1;
  }
  if (obj.is_list()) {
    std::vector<Value> items;
    items.reserve(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) {
      items.push_back(obj.list().items[start + k * step]);
    }
    return NewList(std::move(items), budget, obj.list().tuple);
  }
  std::string out;
  if (offsets.empty() && step == 1) {
    // ASCII, contiguous.
    if (count > 0) out = obj.str().substr(start, count);
  } else {
    for (int64_t k = 0; k < count; ++k) {
      const int64_t i = start + k * step;
      if (offsets.empty()) {
        out.push_back(obj.str()[i]);
      } else {
        out.append(obj.str(), offsets[i], offsets[i + 1] - offsets[i]);
      }
    }
  }
  return NewString(std::move(out), budget);
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item,
                              Budget& budget) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString: {
      if (!item.is_string()) {
        return Error(
            absl::StrCat("'in <string>' requires string as left "
                         "operand, not ",
                         TypeName(item)));
      }
      absl::Status s = budget.SpendBytes(container.str().size());
      if (!s.ok()) return s;
      return container.str().find(item.str()) != std::string::npos;
    }
    case Value::Kind::kList:
      for (const Value& v : container.list().items) {
        absl::StatusOr<bool> eq = Equals(v, item, budget);
        if (!eq.ok() || *eq) return eq;
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    default:
      return Error(absl::StrCat("argument of type '", TypeName(container),
                                "' is not iterable"));
  }
}

absl::StatusOr<Value> CallMethod(const Value& self, absl::string_view name,
                                 const CallArgs& args, Budget& budget) {
  if (self.is_string()) return CallStringMethod(self.str(), name, args, budget);
  if (self.is_dict()) return CallDictMethod(self.dict(), name, args, budget);
  if (self.is_loop() && name == "cycle") {
    if (!args.keyword.empty()) {
      return Error("loop.cycle() takes no keyword arguments");
    }
    if (args.positional.empty()) {
      return Error("loop.cycle() needs at least one argument");
    }
    const int64_t n = static_cast<int64_t>(args.positional.size());
    return args.positional[static_cast<size_t>(self.loop().index0 % n)];
  }
  return Error(
      absl::StrCat("'", TypeName(self), "' object has no method '", name, "'"));
}

std::shared_ptr<const CallableData> FindGlobal(absl::string_view name) {
  if (name != "range" && name != "raise_exception" && name != "strftime_now" &&
      name != "dict") {
    return nullptr;
  }
  auto callable = std::make_shared<CallableData>();
  callable->type = CallableData::Type::kGlobal;
  callable->name = std::string(name);
  return callable;
}

absl::StatusOr<Value> CallGlobal(absl::string_view name, const CallArgs& args,
                                 Budget& budget) {
  if (name == "raise_exception") {
    if (args.positional.empty()) {
      return Error("raise_exception: (no message)");
    }
    absl::StatusOr<std::string> message = ToStr(args.positional[0], budget);
    if (!message.ok()) return message.status();
    return Error(absl::StrCat("raise_exception: ", *message));
  }
  if (name == "range") {
    if (!args.keyword.empty()) {
      return Error("range() takes no keyword arguments");
    }
    const auto& p = args.positional;
    if (p.empty() || p.size() > 3) {
      return Error("range() takes 1 to 3 arguments");
    }
    for (const Value& v : p) {
      if (!v.is_integral()) {
        return Error(absl::StrCat("range(): '", TypeName(v),
                                  "' object cannot be interpreted as an "
                                  "integer"));
      }
    }
    int64_t start = 0, stop, step = 1;
    if (p.size() == 1) {
      stop = p[0].int_value();
    } else {
      start = p[0].int_value();
      stop = p[1].int_value();
      if (p.size() == 3) step = p[2].int_value();
    }
    if (step == 0) return Error("range() arg 3 must not be zero");
    __int128 count = 0;
    if (step > 0 && start < stop) {
      count = ((__int128)stop - start - 1) / step + 1;
    } else if (step < 0 && start > stop) {
      count = ((__int128)start - stop - 1) / -(__int128)step + 1;
    }
    // Spent before anything is allocated: range(10**12) fails here.
    if (count > budget.max_steps()) {
      return budget.Spend(budget.max_steps() + 1);
    }
    absl::Status s = budget.Spend(static_cast<int64_t>(count));
    if (!s.ok()) return s;
    std::vector<Value> items;
    items.reserve(static_cast<size_t>(count));
    for (__int128 i = 0; i < count; ++i) {
      items.push_back(Value::Int(static_cast<int64_t>(start + i * step)));
    }
    return Value::List(std::move(items));
  }
  if (name == "strftime_now") {
    std::vector<const Value*> a;
    absl::Status s = BindArgs("strftime_now", args, {"format"}, &a);
    if (!s.ok()) return s;
    const std::string* format = nullptr;
    s = StringArg(a[0], "strftime_now format", &format);
    if (!s.ok()) return s;
    if (format->size() > 4096) return Error("strftime_now: format too long");
    const std::time_t now = std::time(nullptr);
    std::tm tm;
    gmtime_r(&now, &tm);
    if (format->empty()) return Value::String("");
    for (size_t size = 256; size <= (size_t{1} << 20); size *= 4) {
      std::string buffer(size, '\0');
      const size_t n = std::strftime(buffer.data(), size, format->c_str(), &tm);
      if (n > 0) {
        buffer.resize(n);
        return NewString(std::move(buffer), budget);
      }
    }
    return Value::String("");
  }
  if (name == "dict") {
    if (args.positional.size() > 1)
      return Error("dict() takes at most 1 argument");
    auto dict = std::make_shared<DictData>();
    if (!args.positional.empty()) {
      const Value& source = args.positional[0];
      if (source.is_dict()) {
        for (const auto& [k, v] : source.dict().items) dict->Set(k, v);
      } else if (source.is_list()) {
        for (const Value& pair : source.list().items) {
          if (!pair.is_list() || pair.list().items.size() != 2 ||
              !pair.list().items[0].is_string()) {
            return Error("dict(): expected (string key, value) pairs");
          }
          dict->Set(pair.list().items[0].str(), pair.list().items[1]);
        }
      } else {
        return Error(absl::StrCat("dict(): '", TypeName(source),
                                  "' object is not iterable"));
      }
    }
    for (const auto& [k, v] : args.keyword) dict->Set(k, v);
    absl::Status s = budget.Spend(static_cast<int64_t>(dict->size()));
    if (!s.ok()) return s;
    if (dict->nesting > kMaxValueNesting)
      return Error("value nested too deeply");
    return Value::Dict(std::move(dict));
  }
  return Error(absl::StrCat("unknown function '", name, "'"));
}

}  // namespace jinja
}  // namespace longctx
