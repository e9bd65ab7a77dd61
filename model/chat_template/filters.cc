#include "model/chat_template/filters.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/builtins.h"
#include "model/chat_template/text_util.h"

namespace longctx {
namespace jinja {
namespace {

absl::Status Error(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// ---- Sorting ---------------------------------------------------------

// Sort key of an item: by `attribute` (comma-separated paths) and, unless
// case sensitive, lowercased strings.
absl::StatusOr<Value> SortKey(const Value& item, const Value* attribute,
                              bool case_sensitive, Budget& budget) {
  auto fold = [&](Value v) -> absl::StatusOr<Value> {
    if (!case_sensitive && v.is_string()) {
      return NewString(PyLower(v.str()), budget);
    }
    return v;
  };
  if (attribute == nullptr || attribute->is_none()) return fold(item);
  if (attribute->is_string() &&
      attribute->str().find(',') != std::string::npos) {
    std::vector<Value> keys;
    size_t start = 0;
    const std::string& spec = attribute->str();
    while (start <= spec.size()) {
      size_t comma = spec.find(',', start);
      if (comma == std::string::npos) comma = spec.size();
      absl::StatusOr<Value> part =
          GetPath(item,
                  Value::String(std::string(absl::StripAsciiWhitespace(
                      absl::string_view(spec).substr(start, comma - start)))),
                  budget);
      if (!part.ok()) return part.status();
      absl::StatusOr<Value> folded = fold(*std::move(part));
      if (!folded.ok()) return folded.status();
      keys.push_back(*std::move(folded));
      start = comma + 1;
    }
    return NewList(std::move(keys), budget, /*tuple=*/true);
  }
  absl::StatusOr<Value> key = GetPath(item, *attribute, budget);
  if (!key.ok()) return key.status();
  return fold(*std::move(key));
}

// Stable merge sort of `order` by keys[order[i]]; comparison errors are
// returned, not thrown.
absl::Status MergeSort(std::vector<size_t>* order,
                       const std::vector<Value>& keys, bool reverse,
                       Budget& budget) {
  std::vector<size_t> buffer(order->size());
  for (size_t width = 1; width < order->size(); width *= 2) {
    for (size_t lo = 0; lo < order->size(); lo += 2 * width) {
      const size_t mid = std::min(lo + width, order->size());
      const size_t hi = std::min(lo + 2 * width, order->size());
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        int c = 0;
        absl::Status s =
            Compare(keys[(*order)[j]], keys[(*order)[i]], budget, &c);
        if (!s.ok()) return s;
        // Take from the right only when strictly before (stability).
        const bool right_first = reverse ? c > 0 : c < 0;
        buffer[k++] = right_first ? (*order)[j++] : (*order)[i++];
      }
      while (i < mid) buffer[k++] = (*order)[i++];
      while (j < hi) buffer[k++] = (*order)[j++];
    }
    order->swap(buffer);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Value>> SortedItems(const std::vector<Value>& items,
                                               const Value* attribute,
                                               bool case_sensitive,
                                               bool reverse, Budget& budget) {
  std::vector<Value> keys;
  keys.reserve(items.size());
  for (const Value& item : items) {
    absl::StatusOr<Value> key =
        SortKey(item, attribute, case_sensitive, budget);
    if (!key.ok()) return key.status();
    keys.push_back(*std::move(key));
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status s = MergeSort(&order, keys, reverse, budget);
  if (!s.ok()) return s;
  std::vector<Value> sorted;
  sorted.reserve(items.size());
  for (size_t i : order) sorted.push_back(items[i]);
  return sorted;
}

// A hashable key for unique(): Python's hash equality for str, numbers,
// None, bool.
absl::StatusOr<std::string> HashKey(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return absl::StrCat("s", v.str());
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return absl::StrCat("n", v.int_value());
    case Value::Kind::kFloat: {
      const double d = v.float_value();
      if (std::floor(d) == d && std::fabs(d) < 9e18) {
        return absl::StrCat("n", static_cast<int64_t>(d));
      }
      return absl::StrCat("f", PyFloatRepr(d));
    }
    case Value::Kind::kNone:
      return std::string("N");
    default:
      return Error(absl::StrCat("unhashable type: '", TypeName(v), "'"));
  }
}

// ---- Numbers ---------------------------------------------------------

// Python's int(str, base) for base 10: optional sign, digits with single
// underscores between them, surrounding whitespace.
bool ParsePyInt(absl::string_view s, int64_t* out) {
  std::string t = PyStrip(s, nullptr, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  if (i >= t.size()) return false;
  std::string digits;
  for (; i < t.size(); ++i) {
    if (t[i] >= '0' && t[i] <= '9') {
      digits.push_back(t[i]);
    } else if (t[i] == '_' && !digits.empty() && i + 1 < t.size() &&
               t[i + 1] >= '0' && t[i + 1] <= '9') {
      continue;
    } else {
      return false;
    }
  }
  if (digits.empty()) return false;
  errno = 0;
  const long long v = std::strtoll(digits.c_str(), nullptr, 10);
  if (errno == ERANGE) return false;
  *out = negative ? -v : v;
  return true;
}

// Python's float(str).
bool ParsePyFloat(absl::string_view s, double* out) {
  std::string t = PyStrip(s, nullptr, true, true);
  std::string lower = absl::AsciiStrToLower(t);
  size_t i = 0;
  bool negative = false;
  if (i < lower.size() && (lower[i] == '+' || lower[i] == '-')) {
    negative = lower[i++] == '-';
  }
  absl::string_view rest = absl::string_view(lower).substr(i);
  if (rest == "inf" || rest == "infinity") {
    *out = negative ? -HUGE_VAL : HUGE_VAL;
    return true;
  }
  if (rest == "nan") {
    *out = std::nan("");
    return true;
  }
  std::string clean;
  bool digits = false;
  bool dot = false;
  bool exp = false;
  for (size_t j = 0; j < rest.size(); ++j) {
    const char c = rest[j];
    if (c >= '0' && c <= '9') {
      digits = true;
      clean.push_back(c);
    } else if (c == '_' && j > 0 && j + 1 < rest.size() && rest[j - 1] >= '0' &&
               rest[j - 1] <= '9' && rest[j + 1] >= '0' && rest[j + 1] <= '9') {
      continue;
    } else if (c == '.' && !dot && !exp) {
      dot = true;
      clean.push_back(c);
    } else if (c == 'e' && digits && !exp) {
      exp = true;
      clean.push_back(c);
      if (j + 1 < rest.size() && (rest[j + 1] == '+' || rest[j + 1] == '-')) {
        clean.push_back(rest[++j]);
      }
      if (j + 1 >= rest.size()) return false;
    } else {
      return false;
    }
  }
  if (!digits) return false;
  const double v = std::strtod(clean.c_str(), nullptr);
  *out = negative ? -v : v;
  return true;
}

double RoundHalfEven(double x) { return std::nearbyint(x); }

// ---- Filters ---------------------------------------------------------

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// Python's indent filter (Jinja 3).
std::string Indent(absl::string_view s, const std::string& indention,
                   bool first, bool blank) {
  std::string text = absl::StrCat(s, "\n");
  std::vector<std::string> lines = PySplitLines(text);
  std::string rv;
  if (blank) {
    rv = absl::StrJoin(lines, absl::StrCat("\n", indention));
  } else if (!lines.empty()) {
    rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
    }
  }
  if (first) rv = indention + rv;
  return rv;
}

absl::StatusOr<Value> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CharCount(v.str())));
    case Value::Kind::kList:
      return Value::Int(static_cast<int64_t>(v.list().items.size()));
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(v.dict().size()));
    default:
      return Error(
          absl::StrCat("object of type '", TypeName(v), "' has no len()"));
  }
}

// select / reject / selectattr / rejectattr.
absl::StatusOr<Value> SelectOrReject(absl::string_view filter,
                                     const Value& value, const CallArgs& args,
                                     bool select, bool by_attribute,
                                     Budget& budget) {
  size_t next = 0;
  const Value* attribute = nullptr;
  if (by_attribute) {
    if (args.positional.empty()) {
      return Error(absl::StrCat(filter, ": missing the attribute name"));
    }
    attribute = &args.positional[next++];
  }
  const Value* test = nullptr;
  if (next < args.positional.size()) test = &args.positional[next++];
  if (test != nullptr && !test->is_string()) {
    return Error(absl::StrCat(filter, ": the test name must be a string"));
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + next,
                              args.positional.end());
  test_args.keyword = args.keyword;
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  for (const Value& item : (*items)->items) {
    Value subject = item;
    if (attribute != nullptr) {
      absl::StatusOr<Value> v = GetPath(item, *attribute, budget);
      if (!v.ok()) return v.status();
      subject = *std::move(v);
    }
    bool pass;
    if (test == nullptr) {
      pass = Truthy(subject);
    } else {
      absl::StatusOr<bool> r =
          ApplyTest(test->str(), subject, test_args, budget);
      if (!r.ok()) return r.status();
      pass = *r;
    }
    if (pass == select) out.push_back(item);
  }
  return NewList(std::move(out), budget);
}

absl::StatusOr<Value> MapFilter(const Value& value, const CallArgs& args,
                                Budget& budget) {
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  out.reserve((*items)->items.size());
  if (args.positional.empty()) {
    const Value* attribute = nullptr;
    const Value* default_value = nullptr;
    for (const auto& [k, v] : args.keyword) {
      if (k == "attribute") {
        attribute = &v;
      } else if (k == "default") {
        default_value = &v;
      } else {
        return Error(
            absl::StrCat("map: unexpected keyword argument '", k, "'"));
      }
    }
    if (attribute == nullptr) {
      return Error("map: needs a filter name or attribute=");
    }
    for (const Value& item : (*items)->items) {
      absl::StatusOr<Value> v = GetPath(item, *attribute, budget);
      if (!v.ok()) return v.status();
      if (v->is_undefined() && default_value != nullptr) {
        out.push_back(*default_value);
      } else {
        out.push_back(*std::move(v));
      }
    }
    return NewList(std::move(out), budget);
  }
  if (!args.positional[0].is_string()) {
    return Error("map: the filter name must be a string");
  }
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1,
                                args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : (*items)->items) {
    absl::StatusOr<Value> v =
        ApplyFilter(args.positional[0].str(), item, filter_args, budget);
    if (!v.ok()) return v.status();
    out.push_back(*std::move(v));
  }
  return NewList(std::move(out), budget);
}

absl::StatusOr<Value> ToJsonFilter(const Value& value, const CallArgs& args,
                                   Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s =
      BindArgs("tojson", args,
               {"ensure_ascii", "indent", "separators", "sort_keys"}, &a);
  if (!s.ok()) return s;
  JsonOptions options;
  options.ensure_ascii = ArgTruthy(a[0], false);
  if (a[1] != nullptr && !a[1]->is_none()) {
    options.indent_set = true;
    if (a[1]->is_string()) {
      options.indent = a[1]->str();
    } else if (a[1]->is_integral()) {
      options.indent = std::string(
          static_cast<size_t>(std::clamp<int64_t>(a[1]->int_value(), 0, 64)),
          ' ');
    } else {
      return Error("tojson: indent must be an integer or a string");
    }
    options.item_separator = ",";
  }
  if (a[2] != nullptr && !a[2]->is_none()) {
    if (!a[2]->is_list() || a[2]->list().items.size() != 2 ||
        !a[2]->list().items[0].is_string() ||
        !a[2]->list().items[1].is_string()) {
      return Error("tojson: separators must be a pair of strings");
    }
    options.item_separator = a[2]->list().items[0].str();
    options.key_separator = a[2]->list().items[1].str();
  }
  options.sort_keys = ArgTruthy(a[3], false);
  std::string out;
  s = AppendJson(value, options, budget, &out);
  if (!s.ok()) return s;
  return NewString(std::move(out), budget);
}

absl::StatusOr<Value> IntFilter(const Value& value, const CallArgs& args) {
  std::vector<const Value*> a;
  absl::Status s = BindArgs("int", args, {"default", "base"}, &a);
  if (!s.ok()) return s;
  const Value fallback = a[0] != nullptr ? *a[0] : Value::Int(0);
  if (a[1] != nullptr && !(a[1]->is_integral() && a[1]->int_value() == 10)) {
    return Error("int: only base 10 is supported");
  }
  if (value.is_integral()) return Value::Int(value.int_value());
  if (value.is_float()) {
    const double d = value.float_value();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::Int(static_cast<int64_t>(std::trunc(d)));
  }
  if (value.is_string()) {
    int64_t i;
    if (ParsePyInt(value.str(), &i)) return Value::Int(i);
    double d;
    if (ParsePyFloat(value.str(), &d) && std::isfinite(d) &&
        std::fabs(d) < 9.2e18) {
      return Value::Int(static_cast<int64_t>(std::trunc(d)));
    }
  }
  return fallback;
}

absl::StatusOr<Value> FloatFilter(const Value& value, const CallArgs& args) {
  std::vector<const Value*> a;
  absl::Status s = BindArgs("float", args, {"default"}, &a);
  if (!s.ok()) return s;
  const Value fallback = a[0] != nullptr ? *a[0] : Value::Float(0.0);
  if (value.is_number()) return Value::Float(value.number_value());
  if (value.is_string()) {
    double d;
    if (ParsePyFloat(value.str(), &d)) return Value::Float(d);
  }
  return fallback;
}

absl::StatusOr<Value> RoundFilter(const Value& value, const CallArgs& args) {
  std::vector<const Value*> a;
  absl::Status s = BindArgs("round", args, {"precision", "method"}, &a);
  if (!s.ok()) return s;
  int64_t precision = 0;
  if (a[0] != nullptr) {
    s = IntArg(a[0], "round precision", &precision);
    if (!s.ok()) return s;
  }
  std::string method = "common";
  if (a[1] != nullptr) {
    if (!a[1]->is_string()) return Error("round: method must be a string");
    method = a[1]->str();
  }
  if (method != "common" && method != "floor" && method != "ceil") {
    return Error("round: method must be 'common', 'ceil' or 'floor'");
  }
  if (!value.is_number()) {
    return Error(
        absl::StrCat("round: '", TypeName(value), "' is not a number"));
  }
  if (value.is_integral() && method == "common" && precision >= 0) {
    return Value::Int(value.int_value());
  }
  const double x = value.number_value();
  if (!std::isfinite(x)) return Value::Float(x);
  if (method == "common") {
    if (precision >= 0) {
      // Python rounds the exact binary value half to even, as printf does.
      char buf[512];
      std::snprintf(buf, sizeof(buf), "%.*f",
                    static_cast<int>(std::min<int64_t>(precision, 300)), x);
      return Value::Float(std::strtod(buf, nullptr));
    }
    const double unit =
        std::pow(10.0, static_cast<double>(std::min<int64_t>(-precision, 308)));
    return Value::Float(RoundHalfEven(x / unit) * unit);
  }
  const double scale = std::pow(
      10.0, static_cast<double>(std::clamp<int64_t>(precision, -308, 308)));
  const double scaled = x * scale;
  return Value::Float(
      (method == "floor" ? std::floor(scaled) : std::ceil(scaled)) / scale);
}

absl::StatusOr<Value> JoinFilter(const Value& value, const CallArgs& args,
                                 Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s = BindArgs("join", args, {"d", "attribute"}, &a);
  if (!s.ok()) return s;
  std::string separator;
  if (a[0] != nullptr) {
    absl::StatusOr<std::string> d = ToStr(*a[0], budget);
    if (!d.ok()) return d.status();
    separator = *std::move(d);
  }
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  std::string out;
  bool first = true;
  for (const Value& item : (*items)->items) {
    if (!first) out += separator;
    first = false;
    Value v = item;
    if (a[1] != nullptr) {
      absl::StatusOr<Value> got = GetPath(item, *a[1], budget);
      if (!got.ok()) return got.status();
      v = *std::move(got);
    }
    s = AppendStr(v, budget, &out);
    if (!s.ok()) return s;
    s = budget.CheckSize(out.size());
    if (!s.ok()) return s;
  }
  return NewString(std::move(out), budget);
}

absl::StatusOr<Value> MinMax(const Value& value, const CallArgs& args, bool max,
                             Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s =
      BindArgs(max ? "max" : "min", args, {"case_sensitive", "attribute"}, &a);
  if (!s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  if ((*items)->items.empty()) return Value();
  const bool case_sensitive = ArgTruthy(a[0], false);
  size_t best = 0;
  absl::StatusOr<Value> best_key =
      SortKey((*items)->items[0], a[1], case_sensitive, budget);
  if (!best_key.ok()) return best_key.status();
  for (size_t i = 1; i < (*items)->items.size(); ++i) {
    absl::StatusOr<Value> key =
        SortKey((*items)->items[i], a[1], case_sensitive, budget);
    if (!key.ok()) return key.status();
    int c = 0;
    s = Compare(*key, *best_key, budget, &c);
    if (!s.ok()) return s;
    if (max ? c > 0 : c < 0) {
      best = i;
      best_key = *std::move(key);
    }
  }
  return (*items)->items[best];
}

absl::StatusOr<Value> SumFilter(const Value& value, const CallArgs& args,
                                Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s = BindArgs("sum", args, {"attribute", "start"}, &a);
  if (!s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  Value total = a[1] != nullptr ? *a[1] : Value::Int(0);
  for (const Value& item : (*items)->items) {
    Value v = item;
    if (a[0] != nullptr) {
      absl::StatusOr<Value> got = GetPath(item, *a[0], budget);
      if (!got.ok()) return got.status();
      v = *std::move(got);
    }
    if (!v.is_number() || !total.is_number()) {
      return Error(absl::StrCat("sum: unsupported operand type(s) for +: '",
                                TypeName(total), "' and '", TypeName(v), "'"));
    }
    if (total.is_float() || v.is_float()) {
      total = Value::Float(total.number_value() + v.number_value());
    } else {
      int64_t r;
      if (__builtin_add_overflow(total.int_value(), v.int_value(), &r)) {
        return Error("sum: integer overflow");
      }
      total = Value::Int(r);
    }
  }
  return total;
}

absl::StatusOr<Value> UniqueFilter(const Value& value, const CallArgs& args,
                                   Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s =
      BindArgs("unique", args, {"case_sensitive", "attribute"}, &a);
  if (!s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const ListData>> items =
      AsSequence(value, budget);
  if (!items.ok()) return items.status();
  const bool case_sensitive = ArgTruthy(a[0], false);
  absl::flat_hash_set<std::string> seen;
  std::vector<Value> out;
  for (const Value& item : (*items)->items) {
    absl::StatusOr<Value> key = SortKey(item, a[1], case_sensitive, budget);
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> hash = HashKey(*key);
    if (!hash.ok()) return hash.status();
    if (seen.insert(*std::move(hash)).second) out.push_back(item);
  }
  return NewList(std::move(out), budget);
}

absl::StatusOr<Value> DictSortFilter(const Value& value, const CallArgs& args,
                                     Budget& budget) {
  std::vector<const Value*> a;
  absl::Status s =
      BindArgs("dictsort", args, {"case_sensitive", "by", "reverse"}, &a);
  if (!s.ok()) return s;
  if (!value.is_dict()) return Error("dictsort: expected a dict");
  bool by_value = false;
  if (a[1] != nullptr) {
    if (!a[1]->is_string() ||
        (a[1]->str() != "key" && a[1]->str() != "value")) {
      return Error("dictsort: by must be 'key' or 'value'");
    }
    by_value = a[1]->str() == "value";
  }
  absl::StatusOr<Value> pairs = DictItems(value.dict(), budget);
  if (!pairs.ok()) return pairs.status();
  const Value index = Value::Int(by_value ? 1 : 0);
  absl::StatusOr<std::vector<Value>> sorted =
      SortedItems(pairs->list().items, &index, ArgTruthy(a[0], false),
                  ArgTruthy(a[2], false), budget);
  if (!sorted.ok()) return sorted.status();
  return NewList(*std::move(sorted), budget);
}

}  // namespace

absl::StatusOr<Value> ApplyFilter(absl::string_view name, const Value& value,
                                  const CallArgs& args, Budget& budget) {
  absl::Status spent = budget.Spend(1);
  if (!spent.ok()) return spent;
  std::vector<const Value*> a;
  auto bind = [&](std::vector<absl::string_view> names) {
    return BindArgs(name, args, names, &a);
  };
  // String filters: the operand is converted with str() first.
  auto string_of = [&](std::string* out) -> absl::Status {
    absl::StatusOr<std::string> s = ToStr(value, budget);
    if (!s.ok()) return s.status();
    *out = *std::move(s);
    return budget.SpendBytes(out->size());
  };

  if (name == "safe") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    return value;
  }
  if (name == "tojson") return ToJsonFilter(value, args, budget);
  if (name == "trim") {
    absl::Status s = bind({"chars"});
    if (!s.ok()) return s;
    std::string text;
    s = string_of(&text);
    if (!s.ok()) return s;
    const std::string* chars = nullptr;
    if (a[0] != nullptr && !a[0]->is_none()) {
      s = StringArg(a[0], "trim chars", &chars);
      if (!s.ok()) return s;
    }
    return NewString(PyStrip(text, chars, true, true), budget);
  }
  if (name == "upper" || name == "lower" || name == "title" ||
      name == "capitalize" || name == "escape" || name == "e" ||
      name == "string") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    if (name == "string" && value.is_string()) return value;
    std::string text;
    s = string_of(&text);
    if (!s.ok()) return s;
    if (name == "upper") return NewString(PyUpper(text), budget);
    if (name == "lower") return NewString(PyLower(text), budget);
    if (name == "title") return NewString(JinjaTitle(text), budget);
    if (name == "capitalize") return NewString(PyCapitalize(text), budget);
    if (name == "string") return NewString(std::move(text), budget);
    return NewString(HtmlEscape(text), budget);
  }
  if (name == "length" || name == "count") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    return Length(value);
  }
  if (name == "default" || name == "d") {
    absl::Status s = bind({"default_value", "boolean"});
    if (!s.ok()) return s;
    const bool use_default =
        value.is_undefined() || (ArgTruthy(a[1], false) && !Truthy(value));
    if (!use_default) return value;
    return a[0] != nullptr ? *a[0] : Value::String("");
  }
  if (name == "join") return JoinFilter(value, args, budget);
  if (name == "first" || name == "last") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(value, budget);
    if (!items.ok()) return items.status();
    if ((*items)->items.empty()) return Value();
    return name == "first" ? (*items)->items.front() : (*items)->items.back();
  }
  if (name == "list") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(value, budget);
    if (!items.ok()) return items.status();
    return NewList((*items)->items, budget);
  }
  if (name == "reverse") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    if (value.is_string()) {
      const std::vector<size_t> offsets = CharOffsets(value.str());
      std::string out;
      out.reserve(value.str().size());
      for (size_t i = offsets.size() - 1; i > 0; --i) {
        out.append(value.str(), offsets[i - 1], offsets[i] - offsets[i - 1]);
      }
      return NewString(std::move(out), budget);
    }
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(value, budget);
    if (!items.ok()) return items.status();
    std::vector<Value> out((*items)->items.rbegin(), (*items)->items.rend());
    return NewList(std::move(out), budget);
  }
  if (name == "int") return IntFilter(value, args);
  if (name == "float") return FloatFilter(value, args);
  if (name == "abs") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    if (value.is_float()) return Value::Float(std::fabs(value.float_value()));
    if (value.is_integral()) {
      if (value.int_value() == INT64_MIN) return Error("abs: integer overflow");
      return Value::Int(std::abs(value.int_value()));
    }
    return Error(
        absl::StrCat("bad operand type for abs(): '", TypeName(value), "'"));
  }
  if (name == "round") return RoundFilter(value, args);
  if (name == "replace") {
    absl::Status s = bind({"old", "new", "count"});
    if (!s.ok()) return s;
    if (a[0] == nullptr || a[1] == nullptr) {
      return Error("replace: needs the old and the new string");
    }
    CallArgs method_args;
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::string> text = ToStr(*a[i], budget);
      if (!text.ok()) return text.status();
      method_args.positional.push_back(Value::String(*std::move(text)));
    }
    if (a[2] != nullptr) method_args.positional.push_back(*a[2]);
    std::string text;
    s = string_of(&text);
    if (!s.ok()) return s;
    return CallMethod(Value::String(std::move(text)), "replace", method_args,
                      budget);
  }
  if (name == "indent") {
    absl::Status s = bind({"width", "first", "blank"});
    if (!s.ok()) return s;
    std::string indention = "    ";
    if (a[0] != nullptr) {
      if (a[0]->is_string()) {
        indention = a[0]->str();
      } else if (a[0]->is_integral()) {
        indention = std::string(
            static_cast<size_t>(std::clamp<int64_t>(a[0]->int_value(), 0, 256)),
            ' ');
      } else {
        return Error("indent: width must be an integer or a string");
      }
    }
    std::string text;
    s = string_of(&text);
    if (!s.ok()) return s;
    const size_t lines = std::count(text.begin(), text.end(), '\n') + 1;
    s = budget.CheckSize(text.size() + lines * indention.size());
    if (!s.ok()) return s;
    return NewString(
        Indent(text, indention, ArgTruthy(a[1], false), ArgTruthy(a[2], false)),
        budget);
  }
  if (name == "items") {
    absl::Status s = bind({});
    if (!s.ok()) return s;
    if (value.is_undefined()) return NewList({}, budget);
    if (!value.is_dict())
      return Error("items: can only get item pairs from a mapping");
    return DictItems(value.dict(), budget);
  }
  if (name == "dictsort") return DictSortFilter(value, args, budget);
  if (name == "sort") {
    absl::Status s = bind({"reverse", "case_sensitive", "attribute"});
    if (!s.ok()) return s;
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(value, budget);
    if (!items.ok()) return items.status();
    absl::StatusOr<std::vector<Value>> sorted =
        SortedItems((*items)->items, a[2], ArgTruthy(a[1], false),
                    ArgTruthy(a[0], false), budget);
    if (!sorted.ok()) return sorted.status();
    return NewList(*std::move(sorted), budget);
  }
  if (name == "unique") return UniqueFilter(value, args, budget);
  if (name == "min" || name == "max") {
    return MinMax(value, args, name == "max", budget);
  }
  if (name == "sum") return SumFilter(value, args, budget);
  if (name == "map") return MapFilter(value, args, budget);
  if (name == "select" || name == "reject") {
    return SelectOrReject(name, value, args, name == "select", false, budget);
  }
  if (name == "selectattr" || name == "rejectattr") {
    return SelectOrReject(name, value, args, name == "selectattr", true,
                          budget);
  }
  if (name == "attr") {
    absl::Status s = bind({"name"});
    if (!s.ok()) return s;
    const std::string* attr = nullptr;
    s = StringArg(a[0], "attr name", &attr);
    if (!s.ok()) return s;
    // An attribute only: a dict's keys are not attributes.
    if (value.is_dict() && !IsDictMethod(*attr)) return Value();
    return GetAttr(value, *attr);
  }
  return Error(absl::StrCat("unknown filter '", name, "'"));
}

absl::StatusOr<bool> ApplyTest(absl::string_view name, const Value& value,
                               const CallArgs& args, Budget& budget) {
  absl::Status spent = budget.Spend(1);
  if (!spent.ok()) return spent;
  std::vector<const Value*> a;
  // Tests without arguments.
  static constexpr absl::string_view kUnary[] = {
      "defined", "undefined", "none",     "boolean",  "false",
      "true",    "integer",   "float",    "number",   "string",
      "mapping", "iterable",  "sequence", "callable", "odd",
      "even",    "lower",     "upper",    "escaped"};
  for (absl::string_view u : kUnary) {
    if (u != name) continue;
    absl::Status s = BindArgs(name, args, {}, &a);
    if (!s.ok()) return s;
    if (name == "defined") return !value.is_undefined();
    if (name == "undefined") return value.is_undefined();
    if (name == "none") return value.is_none();
    if (name == "boolean") return value.is_bool();
    if (name == "false") return value.is_bool() && !value.bool_value();
    if (name == "true") return value.is_bool() && value.bool_value();
    if (name == "integer") return value.is_int();
    if (name == "float") return value.is_float();
    if (name == "number") return value.is_number();
    if (name == "string") return value.is_string();
    if (name == "mapping") return value.is_dict();
    if (name == "iterable" || name == "sequence") {
      return value.is_string() || value.is_list() || value.is_dict();
    }
    if (name == "callable") return value.is_callable();
    if (name == "escaped") return false;
    if (name == "lower" || name == "upper") {
      absl::StatusOr<std::string> text = ToStr(value, budget);
      if (!text.ok()) return text.status();
      return name == "lower" ? PyIsLower(*text) : PyIsUpper(*text);
    }
    // odd / even
    if (value.is_float()) {
      const double r = std::fmod(std::fabs(value.float_value()), 2.0);
      return name == "odd" ? r == 1.0 : r == 0.0;
    }
    if (!value.is_integral()) {
      return Error(absl::StrCat("test '", name, "': '", TypeName(value),
                                "' is not a number"));
    }
    const bool odd = value.int_value() % 2 != 0;
    return name == "odd" ? odd : !odd;
  }
  static constexpr absl::string_view kBinary[] = {
      "divisibleby", "eq",       "equalto", "==", "ne", "!=",
      "lt",          "lessthan", "<",       "le", "<=", "gt",
      "greaterthan", ">",        "ge",      ">=", "in", "sameas"};
  if (std::find(std::begin(kBinary), std::end(kBinary), name) ==
      std::end(kBinary)) {
    return Error(absl::StrCat("unknown test '", name, "'"));
  }
  absl::Status s = BindArgs(name, args, {"other"}, &a);
  if (!s.ok()) return s;
  if (a[0] == nullptr) {
    return Error(absl::StrCat("test '", name, "' needs an argument"));
  }
  const Value& other = *a[0];
  if (name == "divisibleby") {
    if (!value.is_number() || !other.is_number()) {
      return Error("divisibleby: expected numbers");
    }
    if (value.is_float() || other.is_float()) {
      if (other.number_value() == 0)
        return Error("divisibleby: division by zero");
      return std::fmod(value.number_value(), other.number_value()) == 0;
    }
    if (other.int_value() == 0) return Error("divisibleby: division by zero");
    if (other.int_value() == -1) return true;
    return value.int_value() % other.int_value() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") {
    return Equals(value, other, budget);
  }
  if (name == "ne" || name == "!=") {
    absl::StatusOr<bool> eq = Equals(value, other, budget);
    if (!eq.ok()) return eq;
    return !*eq;
  }
  if (name == "lt" || name == "lessthan" || name == "<" || name == "le" ||
      name == "<=" || name == "gt" || name == "greaterthan" || name == ">" ||
      name == "ge" || name == ">=") {
    int c = 0;
    s = Compare(value, other, budget, &c);
    if (!s.ok()) return s;
    if (name == "lt" || name == "lessthan" || name == "<") return c < 0;
    if (name == "le" || name == "<=") return c <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return c > 0;
    return c >= 0;
  }
  if (name == "in") return Contains(other, value, budget);
  if (name == "sameas") {
    if (value.kind() != other.kind()) return false;
    switch (value.kind()) {
      case Value::Kind::kUndefined:
      case Value::Kind::kNone:
        return true;
      case Value::Kind::kBool:
        return value.bool_value() == other.bool_value();
      case Value::Kind::kInt:
        return value.int_value() == other.int_value();
      case Value::Kind::kFloat:
        return false;
      default:
        return value.identity() == other.identity();
    }
  }
  return Error(absl::StrCat("unknown test '", name, "'"));
}

}  // namespace jinja
}  // namespace longctx
