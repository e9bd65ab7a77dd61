#include "model/chat_template/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/ast.h"
#include "model/chat_template/builtins.h"
#include "model/chat_template/filters.h"
#include "model/chat_template/lexer.h"
#include "model/chat_template/value.h"

namespace longctx {
namespace jinja {

// A variable scope; lookups fall through to the parent.
struct Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}
  std::shared_ptr<Scope> parent;
  DictData vars;
};

namespace {

using ScopePtr = std::shared_ptr<Scope>;

absl::Status Error(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// The dotted source name of a callee (`foo`, `message.tool`), for errors.
std::string CalleeName(const Expr& e) {
  if (e.kind == Expr::Kind::kName) return e.name;
  if (e.kind == Expr::Kind::kGetAttr && e.items[0] != nullptr) {
    return absl::StrCat(CalleeName(*e.items[0]), ".", e.name);
  }
  return "expression";
}

class Renderer {
 public:
  Renderer(const Template& tmpl, const ChatTemplateLimits& limits)
      : tmpl_(tmpl),
        limits_(limits),
        budget_(limits.max_steps, limits.max_output_bytes) {}

  ~Renderer() {
    // Namespaces may hold each other (or themselves): empty them all while
    // every one is still alive, so that nothing is leaked and no chain of
    // them is destroyed recursively.
    for (const auto& ns : namespaces_) ns->attrs = DictData();
  }

  absl::StatusOr<std::string> Run(const nlohmann::json& context) {
    auto root = std::make_shared<Scope>(nullptr);
    if (context.is_object()) {
      for (auto it = context.begin(); it != context.end(); ++it) {
        absl::StatusOr<Value> v = FromJson(it.value(), kMaxValueNesting - 1);
        if (!v.ok()) return v.status();
        root->vars.Set(it.key(), *std::move(v));
      }
    } else if (!context.is_null()) {
      return Error("chat template context must be a JSON object");
    }
    std::string out;
    absl::StatusOr<Flow> flow = ExecBlock(tmpl_.body, root, &out);
    if (!flow.ok()) return flow.status();
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  // Counts one level of nesting (block, expression, macro call) for as long
  // as it lives.
  class Nesting {
   public:
    explicit Nesting(Renderer* r) : r_(r) { ++r_->depth_; }
    ~Nesting() { --r_->depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    absl::Status status() const {
      if (r_->depth_ > r_->limits_.max_depth) {
        return absl::ResourceExhaustedError(
            absl::StrCat("chat template rendering exceeded max_depth (",
                         r_->limits_.max_depth, ")"));
      }
      return absl::OkStatus();
    }

   private:
    Renderer* r_;
  };

  // Prefixes the first INVALID_ARGUMENT error with the line it arose on.
  absl::Status Locate(absl::Status s, size_t offset) {
    if (s.ok() || located_ || s.code() != absl::StatusCode::kInvalidArgument) {
      return s;
    }
    located_ = true;
    return Error(absl::StrCat("chat template line ",
                              LineOf(tmpl_.source, offset), ": ", s.message()));
  }

  absl::Status Write(std::string* out, absl::string_view text) {
    absl::Status s = budget_.CheckSize(out->size() + text.size());
    if (!s.ok()) return s;
    s = budget_.SpendBytes(text.size());
    if (!s.ok()) return s;
    out->append(text.data(), text.size());
    return absl::OkStatus();
  }

  absl::StatusOr<Value> NewList(std::vector<Value> items, bool tuple) {
    absl::Status s = budget_.Spend(static_cast<int64_t>(items.size()));
    if (!s.ok()) return s;
    std::shared_ptr<const ListData> list =
        ListData::Make(std::move(items), tuple);
    if (list->nesting > kMaxValueNesting) {
      return Error("value nested too deeply");
    }
    return Value::List(std::move(list));
  }

  absl::StatusOr<Value> NewString(std::string s) {
    absl::Status status = budget_.CheckSize(s.size());
    if (!status.ok()) return status;
    status = budget_.SpendBytes(s.size());
    if (!status.ok()) return status;
    return Value::String(std::move(s));
  }

  Value Lookup(const std::string& name, const ScopePtr& scope) {
    for (const Scope* s = scope.get(); s != nullptr; s = s->parent.get()) {
      const Value* v = s->vars.Find(name);
      if (v != nullptr) return *v;
    }
    if (name == "namespace") {
      auto callable = std::make_shared<CallableData>();
      callable->type = CallableData::Type::kGlobal;
      callable->name = name;
      return Value::Callable(std::move(callable));
    }
    std::shared_ptr<const CallableData> global = FindGlobal(name);
    if (global != nullptr) return Value::Callable(std::move(global));
    return Value();
  }

  // ---- Statements ----------------------------------------------------

  absl::StatusOr<Flow> ExecBlock(const Block& block, const ScopePtr& scope,
                                 std::string* out) {
    Nesting nesting(this);
    absl::Status s = nesting.status();
    if (!s.ok()) return s;
    for (const StmtPtr& stmt : block) {
      absl::StatusOr<Flow> flow = Exec(*stmt, scope, out);
      if (!flow.ok()) return Locate(flow.status(), stmt->offset);
      if (*flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> Exec(const Stmt& stmt, const ScopePtr& scope,
                            std::string* out) {
    absl::Status s = budget_.Spend(1);
    if (!s.ok()) return s;
    switch (stmt.kind) {
      case Stmt::Kind::kText:
        s = Write(out, stmt.text);
        break;
      case Stmt::Kind::kOutput: {
        absl::StatusOr<Value> v = Eval(*stmt.expr, scope);
        if (!v.ok()) return v.status();
        s = AppendStr(*v, budget_, out);
        break;
      }
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < stmt.conditions.size(); ++i) {
          absl::StatusOr<Value> cond = Eval(*stmt.conditions[i], scope);
          if (!cond.ok()) return cond.status();
          if (Truthy(*cond)) return ExecBlock(stmt.blocks[i], scope, out);
        }
        return ExecBlock(stmt.else_block, scope, out);
      case Stmt::Kind::kFor:
        return ExecFor(stmt, scope, out);
      case Stmt::Kind::kSet: {
        absl::StatusOr<Value> v = Eval(*stmt.expr, scope);
        if (!v.ok()) return v.status();
        s = Assign(stmt.target, *std::move(v), scope);
        break;
      }
      case Stmt::Kind::kSetBlock: {
        absl::StatusOr<Value> v = Capture(stmt, scope);
        if (!v.ok()) return v.status();
        s = Assign(stmt.target, *std::move(v), scope);
        break;
      }
      case Stmt::Kind::kFilterBlock: {
        absl::StatusOr<Value> v = Capture(stmt, scope);
        if (!v.ok()) return v.status();
        s = AppendStr(*v, budget_, out);
        break;
      }
      case Stmt::Kind::kMacro: {
        auto macro = std::make_shared<CallableData>();
        macro->type = CallableData::Type::kMacro;
        macro->name = stmt.name;
        macro->macro = &stmt;
        macro->scope = scope;
        scope->vars.Set(stmt.name, Value::Callable(std::move(macro)));
        break;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kBlock:
        return ExecBlock(stmt.body, scope, out);
    }
    if (!s.ok()) return s;
    return Flow::kNormal;
  }

  // The body of a block set or filter block, rendered in its own scope and
  // passed through its filters.
  absl::StatusOr<Value> Capture(const Stmt& stmt, const ScopePtr& scope) {
    auto inner = std::make_shared<Scope>(scope);
    std::string text;
    absl::StatusOr<Flow> flow = ExecBlock(stmt.body, inner, &text);
    if (!flow.ok()) return flow.status();
    Value v = Value::String(std::move(text));
    if (stmt.filter == nullptr) return v;
    return EvalFilter(*stmt.filter, scope, &v);
  }

  absl::Status Assign(const Target& target, Value v, const ScopePtr& scope) {
    if (!target.attr.empty()) {
      const Value ns = Lookup(target.names[0], scope);
      if (!ns.is_namespace()) {
        return Error(absl::StrCat("cannot set attribute '", target.attr,
                                  "' of '", target.names[0],
                                  "': it is not a namespace"));
      }
      if (v.nesting() + 1 > kMaxValueNesting) {
        return Error("value nested too deeply");
      }
      ns.ns().attrs.Set(target.attr, std::move(v));
      return absl::OkStatus();
    }
    return Bind(target, v, scope.get());
  }

  absl::Status Bind(const Target& target, const Value& v, Scope* scope) {
    if (!target.unpack) {
      scope->vars.Set(target.names[0], v);
      return absl::OkStatus();
    }
    absl::StatusOr<std::shared_ptr<const ListData>> items =
        AsSequence(v, budget_);
    if (!items.ok()) {
      return Error(
          absl::StrCat("cannot unpack non-iterable ", TypeName(v), " object"));
    }
    const size_t n = (*items)->items.size();
    if (n != target.names.size()) {
      return Error(
          absl::StrCat(n > target.names.size() ? "too many" : "not enough",
                       " values to unpack (expected ", target.names.size(),
                       ", got ", n, ")"));
    }
    for (size_t i = 0; i < n; ++i) {
      scope->vars.Set(target.names[i], (*items)->items[i]);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, const ScopePtr& scope,
                               std::string* out) {
    absl::StatusOr<Value> iterable = Eval(*stmt.expr, scope);
    if (!iterable.ok()) return iterable.status();
    if (iterable->is_undefined()) {
      return Error(absl::StrCat("cannot iterate over '", CalleeName(*stmt.expr),
                                "': it is undefined"));
    }
    absl::StatusOr<std::shared_ptr<const ListData>> sequence =
        AsSequence(*iterable, budget_);
    if (!sequence.ok()) return sequence.status();
    std::shared_ptr<const ListData> items = *std::move(sequence);
    if (stmt.filter != nullptr) {
      std::vector<Value> kept;
      for (const Value& item : items->items) {
        auto probe = std::make_shared<Scope>(scope);
        absl::Status s = Bind(stmt.target, item, probe.get());
        if (!s.ok()) return s;
        absl::StatusOr<Value> keep = Eval(*stmt.filter, probe);
        if (!keep.ok()) return keep.status();
        if (Truthy(*keep)) kept.push_back(item);
      }
      absl::Status s = budget_.Spend(static_cast<int64_t>(kept.size()));
      if (!s.ok()) return s;
      items = ListData::Make(std::move(kept));
    }
    const std::vector<Value>& list = items->items;
    if (list.empty()) return ExecBlock(stmt.else_block, scope, out);
    const int64_t length = static_cast<int64_t>(list.size());
    for (int64_t i = 0; i < length; ++i) {
      auto iteration = std::make_shared<Scope>(scope);
      absl::Status s = Bind(stmt.target, list[i], iteration.get());
      if (!s.ok()) return s;
      if (stmt.uses_loop) {
        auto loop = std::make_shared<LoopData>();
        loop->index0 = i;
        loop->length = length;
        if (i > 0) loop->previtem = list[i - 1];
        if (i + 1 < length) loop->nextitem = list[i + 1];
        loop->nesting =
            1 + std::max(loop->previtem.nesting(), loop->nextitem.nesting());
        if (loop->nesting > kMaxValueNesting) {
          return Error("value nested too deeply");
        }
        iteration->vars.Set("loop", Value::Loop(std::move(loop)));
      }
      absl::StatusOr<Flow> flow = ExecBlock(stmt.body, iteration, out);
      if (!flow.ok()) return flow;
      if (*flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  // ---- Expressions ---------------------------------------------------

  absl::StatusOr<Value> Eval(const Expr& e, const ScopePtr& scope) {
    Nesting nesting(this);
    absl::Status s = nesting.status();
    if (s.ok()) s = budget_.Spend(1);
    if (!s.ok()) return s;
    absl::StatusOr<Value> v = EvalNode(e, scope);
    if (!v.ok()) return Locate(v.status(), e.offset);
    return v;
  }

  absl::StatusOr<Value> EvalNode(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return Lookup(e.name, scope);
      case Expr::Kind::kList: {
        std::vector<Value> items;
        items.reserve(e.items.size());
        for (const ExprPtr& item : e.items) {
          absl::StatusOr<Value> v = Eval(*item, scope);
          if (!v.ok()) return v;
          items.push_back(*std::move(v));
        }
        return NewList(std::move(items), e.is_tuple);
      }
      case Expr::Kind::kDict: {
        auto dict = std::make_shared<DictData>();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          absl::StatusOr<Value> key = Eval(*e.items[i], scope);
          if (!key.ok()) return key;
          if (!key->is_string()) {
            return Error(absl::StrCat("dict keys must be strings, not '",
                                      TypeName(*key), "'"));
          }
          absl::StatusOr<Value> value = Eval(*e.items[i + 1], scope);
          if (!value.ok()) return value;
          dict->Set(key->str(), *std::move(value));
        }
        if (dict->nesting > kMaxValueNesting) {
          return Error("value nested too deeply");
        }
        absl::Status s = budget_.Spend(static_cast<int64_t>(dict->size()));
        if (!s.ok()) return s;
        return Value::Dict(std::move(dict));
      }
      case Expr::Kind::kUnary:
        return EvalUnary(e, scope);
      case Expr::Kind::kBinary:
        return EvalBinary(e, scope);
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        Value v;
        for (const ExprPtr& item : e.items) {
          absl::StatusOr<Value> next = Eval(*item, scope);
          if (!next.ok()) return next;
          v = *std::move(next);
          if (Truthy(v) == (e.kind == Expr::Kind::kOr)) return v;
        }
        return v;
      }
      case Expr::Kind::kCompare:
        return EvalCompare(e, scope);
      case Expr::Kind::kCondition: {
        absl::StatusOr<Value> cond = Eval(*e.items[1], scope);
        if (!cond.ok()) return cond;
        if (Truthy(*cond)) return Eval(*e.items[0], scope);
        if (e.items[2] == nullptr) return Value();
        return Eval(*e.items[2], scope);
      }
      case Expr::Kind::kGetAttr: {
        absl::StatusOr<Value> obj = Eval(*e.items[0], scope);
        if (!obj.ok()) return obj;
        return GetAttr(*obj, e.name);
      }
      case Expr::Kind::kGetItem: {
        absl::StatusOr<Value> obj = Eval(*e.items[0], scope);
        if (!obj.ok()) return obj;
        absl::StatusOr<Value> key = Eval(*e.items[1], scope);
        if (!key.ok()) return key;
        return GetItem(*obj, *key, budget_);
      }
      case Expr::Kind::kSlice: {
        Value parts[4];
        for (int i = 0; i < 4; ++i) {
          if (e.items[i] == nullptr) continue;
          absl::StatusOr<Value> v = Eval(*e.items[i], scope);
          if (!v.ok()) return v;
          parts[i] = *std::move(v);
        }
        return GetSlice(parts[0], parts[1], parts[2], parts[3], budget_);
      }
      case Expr::Kind::kCall:
        return EvalCall(e, scope);
      case Expr::Kind::kFilter:
        return EvalFilter(e, scope, nullptr);
      case Expr::Kind::kTest: {
        absl::StatusOr<Value> operand = Eval(*e.items[0], scope);
        if (!operand.ok()) return operand;
        absl::StatusOr<CallArgs> args = EvalArgs(e.args, scope);
        if (!args.ok()) return args.status();
        absl::StatusOr<bool> r = ApplyTest(e.name, *operand, *args, budget_);
        if (!r.ok()) return r.status();
        return Value::Bool(*r != e.negated);
      }
    }
    return Error("unknown expression");
  }

  absl::StatusOr<CallArgs> EvalArgs(
      const std::vector<std::pair<std::string, ExprPtr>>& exprs,
      const ScopePtr& scope) {
    CallArgs args;
    for (const auto& [name, expr] : exprs) {
      absl::StatusOr<Value> v = Eval(*expr, scope);
      if (!v.ok()) return v.status();
      if (name.empty()) {
        args.positional.push_back(*std::move(v));
      } else {
        args.keyword.emplace_back(name, *std::move(v));
      }
    }
    return args;
  }

  // A filter node; its innermost operand is *input when the chain belongs
  // to a filter block or block set.
  absl::StatusOr<Value> EvalFilter(const Expr& e, const ScopePtr& scope,
                                   const Value* input) {
    Value operand;
    if (e.items[0] != nullptr) {
      absl::StatusOr<Value> v =
          e.items[0]->kind == Expr::Kind::kFilter
              ? EvalFilterNested(*e.items[0], scope, input)
              : Eval(*e.items[0], scope);
      if (!v.ok()) return v;
      operand = *std::move(v);
    } else if (input != nullptr) {
      operand = *input;
    }
    absl::StatusOr<CallArgs> args = EvalArgs(e.args, scope);
    if (!args.ok()) return args.status();
    return ApplyFilter(e.name, operand, *args, budget_);
  }

  absl::StatusOr<Value> EvalFilterNested(const Expr& e, const ScopePtr& scope,
                                         const Value* input) {
    if (input == nullptr) return Eval(e, scope);
    Nesting nesting(this);
    absl::Status s = nesting.status();
    if (!s.ok()) return s;
    absl::StatusOr<Value> v = EvalFilter(e, scope, input);
    if (!v.ok()) return Locate(v.status(), e.offset);
    return v;
  }

  absl::StatusOr<Value> EvalUnary(const Expr& e, const ScopePtr& scope) {
    absl::StatusOr<Value> operand = Eval(*e.items[0], scope);
    if (!operand.ok()) return operand;
    const Value& v = *operand;
    if (e.name == "not") return Value::Bool(!Truthy(v));
    if (v.is_float()) {
      return Value::Float(e.name == "-" ? -v.float_value() : v.float_value());
    }
    if (v.is_integral()) {
      if (e.name == "+") return Value::Int(v.int_value());
      if (v.int_value() == INT64_MIN) return Error("integer overflow");
      return Value::Int(-v.int_value());
    }
    return Error(absl::StrCat("bad operand type for unary ", e.name, ": '",
                              TypeName(v), "'"));
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e, const ScopePtr& scope) {
    absl::StatusOr<Value> first = Eval(*e.items[0], scope);
    if (!first.ok()) return first;
    Value acc = *std::move(first);
    // A run of string concatenations is built in one buffer.
    std::string buffer;
    bool buffering = false;
    for (size_t i = 1; i < e.items.size(); ++i) {
      const std::string& op = e.ops[i - 1];
      absl::StatusOr<Value> next = Eval(*e.items[i], scope);
      if (!next.ok()) return next;
      const Value& rhs = *next;
      if (op == "~" ||
          (op == "+" && rhs.is_string() && (buffering || acc.is_string()))) {
        if (!buffering) {
          buffer.clear();
          absl::Status s = AppendStr(acc, budget_, &buffer);
          if (!s.ok()) return s;
          buffering = true;
        }
        absl::Status s = AppendStr(rhs, budget_, &buffer);
        if (!s.ok()) return s;
        continue;
      }
      if (buffering) {
        acc = Value::String(std::move(buffer));
        buffering = false;
      }
      absl::StatusOr<Value> r = Arithmetic(op, acc, rhs);
      if (!r.ok()) return r;
      acc = *std::move(r);
    }
    if (buffering) return NewString(std::move(buffer));
    return acc;
  }

  static absl::Status Unsupported(absl::string_view op, const Value& a,
                                  const Value& b) {
    return Error(absl::StrCat("unsupported operand type(s) for ", op, ": '",
                              TypeName(a), "' and '", TypeName(b), "'"));
  }

  absl::StatusOr<Value> Repeat(const Value& seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.is_string()) {
      const size_t size = seq.str().size();
      if (size > 0 &&
          static_cast<uint64_t>(times) > budget_.max_bytes() / size) {
        return budget_.CheckSize(SIZE_MAX);
      }
      std::string out;
      out.reserve(size * times);
      for (int64_t i = 0; i < times; ++i) out += seq.str();
      return NewString(std::move(out));
    }
    const auto& items = seq.list().items;
    if (!items.empty() &&
        static_cast<uint64_t>(times) >
            static_cast<uint64_t>(budget_.max_steps()) / items.size()) {
      return budget_.Spend(budget_.max_steps() + 1);
    }
    absl::Status s = budget_.Spend(static_cast<int64_t>(items.size()) * times);
    if (!s.ok()) return s;
    std::vector<Value> out;
    out.reserve(items.size() * times);
    for (int64_t i = 0; i < times; ++i) {
      out.insert(out.end(), items.begin(), items.end());
    }
    return NewList(std::move(out), seq.list().tuple);
  }

  absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a,
                                   const Value& b) {
    if (a.is_number() && b.is_number()) {
      const bool floats = a.is_float() || b.is_float();
      const double x = a.number_value();
      const double y = b.number_value();
      const int64_t i = a.int_value();
      const int64_t j = b.int_value();
      int64_t r;
      if (op == "+") {
        if (floats) return Value::Float(x + y);
        if (__builtin_add_overflow(i, j, &r)) return Error("integer overflow");
        return Value::Int(r);
      }
      if (op == "-") {
        if (floats) return Value::Float(x - y);
        if (__builtin_sub_overflow(i, j, &r)) return Error("integer overflow");
        return Value::Int(r);
      }
      if (op == "*") {
        if (floats) return Value::Float(x * y);
        if (__builtin_mul_overflow(i, j, &r)) return Error("integer overflow");
        return Value::Int(r);
      }
      if (op == "/") {
        if (y == 0) return Error("division by zero");
        return Value::Float(x / y);
      }
      if (op == "//" || op == "%") {
        if (floats) {
          if (y == 0) return Error("float division by zero");
          // Python's float_floor_div / float_rem.
          double mod = std::fmod(x, y);
          double div = (x - mod) / y;
          if (mod != 0) {
            if ((y < 0) != (mod < 0)) {
              mod += y;
              div -= 1.0;
            }
          } else {
            mod = std::copysign(0.0, y);
          }
          if (op == "%") return Value::Float(mod);
          double floordiv;
          if (div != 0) {
            floordiv = std::floor(div);
            if (div - floordiv > 0.5) floordiv += 1.0;
          } else {
            floordiv = std::copysign(0.0, x / y);
          }
          return Value::Float(floordiv);
        }
        if (j == 0) return Error("integer division or modulo by zero");
        if (i == INT64_MIN && j == -1) {
          if (op == "%") return Value::Int(0);
          return Error("integer overflow");
        }
        int64_t q = i / j;
        int64_t m = i % j;
        if (m != 0 && ((m < 0) != (j < 0))) {
          --q;
          m += j;
        }
        return Value::Int(op == "//" ? q : m);
      }
      if (op == "**") {
        if (!floats && j >= 0) {
          int64_t result = 1;
          int64_t base = i;
          int64_t exp = j;
          while (exp > 0) {
            if (exp & 1) {
              if (__builtin_mul_overflow(result, base, &result)) {
                return Error("integer overflow");
              }
            }
            exp >>= 1;
            if (exp > 0 && __builtin_mul_overflow(base, base, &base)) {
              return Error("integer overflow");
            }
          }
          return Value::Int(result);
        }
        if (x == 0 && y < 0) {
          return Error("0.0 cannot be raised to a negative power");
        }
        const double p = std::pow(x, y);
        if (std::isnan(p) && !std::isnan(x) && !std::isnan(y)) {
          return Error("power with a complex result");
        }
        return Value::Float(p);
      }
      return Unsupported(op, a, b);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        return NewString(absl::StrCat(a.str(), b.str()));
      }
      if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
        std::vector<Value> items = a.list().items;
        items.insert(items.end(), b.list().items.begin(), b.list().items.end());
        return NewList(std::move(items), a.list().tuple);
      }
    }
    if (op == "*") {
      if ((a.is_string() || a.is_list()) && b.is_integral()) {
        return Repeat(a, b.int_value());
      }
      if (a.is_integral() && (b.is_string() || b.is_list())) {
        return Repeat(b, a.int_value());
      }
    }
    return Unsupported(op, a, b);
  }

  absl::StatusOr<Value> EvalCompare(const Expr& e, const ScopePtr& scope) {
    absl::StatusOr<Value> first = Eval(*e.items[0], scope);
    if (!first.ok()) return first;
    Value left = *std::move(first);
    for (size_t i = 1; i < e.items.size(); ++i) {
      absl::StatusOr<Value> next = Eval(*e.items[i], scope);
      if (!next.ok()) return next;
      Value right = *std::move(next);
      const std::string& op = e.ops[i - 1];
      bool result;
      if (op == "==" || op == "!=") {
        absl::StatusOr<bool> eq = Equals(left, right, budget_);
        if (!eq.ok()) return eq.status();
        result = *eq == (op == "==");
      } else if (op == "in" || op == "notin") {
        absl::StatusOr<bool> in = Contains(right, left, budget_);
        if (!in.ok()) return in.status();
        result = *in == (op == "in");
      } else {
        int c = 0;
        absl::Status s = Compare(left, right, budget_, &c);
        if (!s.ok()) {
          return Error(absl::StrCat("'", op,
                                    "' not supported between "
                                    "instances of '",
                                    TypeName(left), "' and '", TypeName(right),
                                    "'"));
        }
        result = op == "<"    ? c < 0
                 : op == "<=" ? c <= 0
                 : op == ">"  ? c > 0
                              : c >= 0;
      }
      if (!result) return Value::Bool(false);
      left = std::move(right);
    }
    return Value::Bool(true);
  }

  absl::StatusOr<Value> EvalCall(const Expr& e, const ScopePtr& scope) {
    const Expr& callee = *e.items[0];
    Value fn;
    // obj.method(...) without building a bound method.
    if (callee.kind == Expr::Kind::kGetAttr) {
      absl::StatusOr<Value> obj = Eval(*callee.items[0], scope);
      if (!obj.ok()) return obj;
      fn = GetAttr(*obj, callee.name);
      if (fn.is_undefined() && !obj->is_undefined()) {
        return Error(absl::StrCat("'", TypeName(*obj),
                                  "' object has no attribute '", callee.name,
                                  "' to call"));
      }
      if (fn.is_callable() &&
          fn.callable().type == CallableData::Type::kMethod) {
        absl::StatusOr<CallArgs> args = EvalArgs(e.args, scope);
        if (!args.ok()) return args.status();
        return CallMethod(*obj, callee.name, *args, budget_);
      }
    } else {
      absl::StatusOr<Value> v = Eval(callee, scope);
      if (!v.ok()) return v;
      fn = *std::move(v);
    }
    if (fn.is_undefined()) {
      return Error(absl::StrCat("'", CalleeName(callee),
                                "' is undefined and cannot be called"));
    }
    if (!fn.is_callable()) {
      return Error(absl::StrCat("'", CalleeName(callee), "' (a ", TypeName(fn),
                                ") is not callable"));
    }
    absl::StatusOr<CallArgs> args = EvalArgs(e.args, scope);
    if (!args.ok()) return args.status();
    const CallableData& callable = fn.callable();
    switch (callable.type) {
      case CallableData::Type::kMacro:
        return CallMacro(callable, *std::move(args));
      case CallableData::Type::kMethod:
        return CallMethod(callable.self, callable.name, *args, budget_);
      case CallableData::Type::kGlobal:
        break;
    }
    if (callable.name == "namespace") return MakeNamespace(*args);
    absl::StatusOr<Value> r = CallGlobal(callable.name, *args, budget_);
    if (!r.ok() && callable.name == "raise_exception" &&
        r.status().code() == absl::StatusCode::kInvalidArgument) {
      located_ = true;  // the template's own message, as it is
    }
    return r;
  }

  absl::StatusOr<Value> MakeNamespace(const CallArgs& args) {
    if (args.positional.size() > 1) {
      return Error("namespace() takes at most 1 positional argument");
    }
    auto ns = std::make_shared<NamespaceData>();
    if (!args.positional.empty()) {
      const Value& source = args.positional[0];
      if (!source.is_dict()) {
        return Error(absl::StrCat("namespace(): expected a dict, not '",
                                  TypeName(source), "'"));
      }
      for (const auto& [k, v] : source.dict().items) ns->attrs.Set(k, v);
    }
    for (const auto& [k, v] : args.keyword) ns->attrs.Set(k, v);
    if (ns->attrs.nesting > kMaxValueNesting) {
      return Error("value nested too deeply");
    }
    absl::Status s = budget_.Spend(1 + static_cast<int64_t>(ns->attrs.size()));
    if (!s.ok()) return s;
    namespaces_.push_back(ns);
    return Value::Namespace(std::move(ns));
  }

  absl::StatusOr<Value> CallMacro(const CallableData& macro, CallArgs args) {
    Nesting nesting(this);
    absl::Status s = nesting.status();
    if (!s.ok()) return s;
    ScopePtr defined_in = macro.scope.lock();
    if (defined_in == nullptr) {
      return Error(absl::StrCat("macro '", macro.name,
                                "' called after the scope it was defined in "
                                "ended"));
    }
    const Stmt& def = *macro.macro;
    auto scope = std::make_shared<Scope>(std::move(defined_in));
    const size_t n = def.params.size();
    if (args.positional.size() > n && !def.uses_varargs) {
      return Error(absl::StrCat("macro '", macro.name, "' takes not more than ",
                                n, " argument(s)"));
    }
    std::vector<bool> given(n, false);
    for (size_t i = 0; i < n && i < args.positional.size(); ++i) {
      scope->vars.Set(def.params[i].name, args.positional[i]);
      given[i] = true;
    }
    auto extra_kwargs = std::make_shared<DictData>();
    for (auto& [name, value] : args.keyword) {
      bool matched = false;
      for (size_t i = 0; i < n; ++i) {
        if (def.params[i].name != name) continue;
        if (given[i]) {
          return Error(absl::StrCat("macro '", macro.name,
                                    "' got multiple values for argument '",
                                    name, "'"));
        }
        scope->vars.Set(name, value);
        given[i] = true;
        matched = true;
      }
      if (!matched) {
        if (!def.uses_kwargs) {
          return Error(absl::StrCat("macro '", macro.name,
                                    "' takes no keyword argument '", name,
                                    "'"));
        }
        extra_kwargs->Set(name, value);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (given[i]) continue;
      if (def.params[i].default_value == nullptr) {
        scope->vars.Set(def.params[i].name, Value());
        continue;
      }
      absl::StatusOr<Value> v = Eval(*def.params[i].default_value, scope);
      if (!v.ok()) return v;
      scope->vars.Set(def.params[i].name, *std::move(v));
    }
    if (def.uses_varargs) {
      std::vector<Value> extra;
      for (size_t i = n; i < args.positional.size(); ++i) {
        extra.push_back(args.positional[i]);
      }
      absl::StatusOr<Value> varargs = NewList(std::move(extra), true);
      if (!varargs.ok()) return varargs;
      scope->vars.Set("varargs", *std::move(varargs));
    }
    if (def.uses_kwargs) {
      if (extra_kwargs->nesting > kMaxValueNesting) {
        return Error("value nested too deeply");
      }
      scope->vars.Set("kwargs", Value::Dict(std::move(extra_kwargs)));
    }
    std::string out;
    absl::StatusOr<Flow> flow = ExecBlock(def.body, scope, &out);
    if (!flow.ok()) return flow.status();
    return Value::String(std::move(out));
  }

  const Template& tmpl_;
  const ChatTemplateLimits& limits_;
  Budget budget_;
  int depth_ = 0;
  bool located_ = false;
  std::vector<std::shared_ptr<NamespaceData>> namespaces_;
};

}  // namespace

absl::StatusOr<std::string> RenderTemplate(const Template& tmpl,
                                           const nlohmann::json& context,
                                           const ChatTemplateLimits& limits) {
  Renderer renderer(tmpl, limits);
  return renderer.Run(context);
}

}  // namespace jinja
}  // namespace longctx
