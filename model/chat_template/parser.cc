#include "model/chat_template/parser.h"

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/lexer.h"

namespace longctx {
namespace jinja {
namespace {

// Where a tuple (a, b, ...) ends besides "}}", "%}" and ")".
enum class TupleEnd { kDefault, kForIterable };

class Parser {
 public:
  Parser(absl::string_view source, std::vector<Token> tokens)
      : source_(source), tokens_(std::move(tokens)) {}

  absl::StatusOr<Block> ParseAll() {
    Block body;
    std::string found;
    ParseBlock(&body, {}, tokens_.front(), "", &found);
    if (!status_.ok()) return status_;
    return body;
  }

 private:
  // Keeps the nesting of the recursive descent within kMaxNesting.
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* parser) : parser_(parser) {
      if (++parser_->depth_ > kMaxNesting) {
        parser_->Fail(parser_->Peek(), "template nested too deeply");
      }
    }
    ~DepthGuard() { --parser_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Parser* parser_;
  };

  bool ok() const { return status_.ok(); }

  const Token& Peek(size_t ahead = 0) const {
    const size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& Next() {
    const Token& t = Peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    const Token& t = Peek(ahead);
    return t.kind == TokenKind::kOp && t.text == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    const Token& t = Peek(ahead);
    return t.kind == TokenKind::kName && t.text == name;
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText:
        return "text";
      case TokenKind::kExprBegin:
        return "'{{'";
      case TokenKind::kExprEnd:
        return "'}}'";
      case TokenKind::kStmtBegin:
        return "'{%'";
      case TokenKind::kStmtEnd:
        return "'%}'";
      case TokenKind::kName:
        return absl::StrCat("'", t.text, "'");
      case TokenKind::kString:
        return "a string";
      case TokenKind::kInt:
      case TokenKind::kFloat:
        return absl::StrCat("'", t.text, "'");
      case TokenKind::kOp:
        return absl::StrCat("'", t.text, "'");
      case TokenKind::kEof:
        return "the end of the template";
    }
    return "a token";
  }

  // Records the first error; returns null for the callers to pass on.
  std::nullptr_t Fail(const Token& at, absl::string_view problem) {
    if (status_.ok()) status_ = SyntaxError(source_, at.offset, problem);
    return nullptr;
  }
  std::nullptr_t FailAt(size_t offset, absl::string_view problem) {
    if (status_.ok()) status_ = SyntaxError(source_, offset, problem);
    return nullptr;
  }

  bool ExpectOp(absl::string_view op) {
    if (!ok()) return false;
    if (!IsOp(op)) {
      Fail(Peek(), absl::StrCat("expected '", op, "', got ", Describe(Peek())));
      return false;
    }
    Next();
    return true;
  }
  bool ExpectStmtEnd() {
    if (!ok()) return false;
    if (Peek().kind != TokenKind::kStmtEnd) {
      Fail(Peek(), absl::StrCat("expected '%}', got ", Describe(Peek())));
      return false;
    }
    Next();
    return true;
  }
  bool ExpectName(std::string* name) {
    if (!ok()) return false;
    if (Peek().kind != TokenKind::kName) {
      Fail(Peek(), absl::StrCat("expected a name, got ", Describe(Peek())));
      return false;
    }
    *name = Next().text;
    return true;
  }

  // Sets the node's depth from its children; fails beyond kMaxNesting.
  ExprPtr Finish(ExprPtr node) {
    if (!ok()) return nullptr;
    int deepest = 0;
    for (const ExprPtr& item : node->items) {
      if (item != nullptr) deepest = std::max(deepest, item->depth);
    }
    for (const auto& arg : node->args) {
      deepest = std::max(deepest, arg.second->depth);
    }
    node->depth = deepest + 1;
    if (node->depth > kMaxNesting) {
      return FailAt(node->offset, "expression nested too deeply");
    }
    return node;
  }

  // ---- Statements ----------------------------------------------------

  // Parses statements into *out until a tag named in `ends` (consumed up to
  // and including its name; *found is set to it). At the top level (`ends`
  // empty) runs to the end of the template.
  void ParseBlock(Block* out, std::initializer_list<absl::string_view> ends,
                  const Token& opener, absl::string_view opener_name,
                  std::string* found) {
    DepthGuard guard(this);
    while (ok()) {
      const Token& t = Peek();
      switch (t.kind) {
        case TokenKind::kEof:
          if (ends.size() != 0) {
            std::string expected;
            for (absl::string_view e : ends) {
              absl::StrAppend(&expected, expected.empty() ? "" : " or ", "'{% ",
                              e, " %}'");
            }
            Fail(opener, absl::StrCat("unclosed '", opener_name,
                                      "' block (expected ", expected, ")"));
          }
          return;
        case TokenKind::kText: {
          auto stmt = std::make_unique<Stmt>(Stmt::Kind::kText, t.offset);
          stmt->text = t.text;
          out->push_back(std::move(stmt));
          Next();
          break;
        }
        case TokenKind::kExprBegin: {
          Next();
          auto stmt = std::make_unique<Stmt>(Stmt::Kind::kOutput, t.offset);
          stmt->expr = ParseTuple(true, false, TupleEnd::kDefault);
          if (!ok()) return;
          if (Peek().kind != TokenKind::kExprEnd) {
            Fail(Peek(), absl::StrCat("expected '}}', got ", Describe(Peek())));
            return;
          }
          Next();
          out->push_back(std::move(stmt));
          break;
        }
        case TokenKind::kStmtBegin: {
          const Token& name = Peek(1);
          if (name.kind != TokenKind::kName) {
            Fail(name,
                 absl::StrCat("expected a tag name, got ", Describe(name)));
            return;
          }
          for (absl::string_view e : ends) {
            if (name.text == e) {
              Next();
              *found = Next().text;
              return;
            }
          }
          ParseStatement(out);
          break;
        }
        default:
          Fail(t, absl::StrCat("unexpected ", Describe(t)));
          return;
      }
    }
  }

  void ParseStatement(Block* out) {
    const Token& begin = Next();  // {%
    const Token& name_token = Next();
    const std::string& name = name_token.text;
    const size_t offset = begin.offset;
    if (name == "for") return ParseFor(offset, begin, out);
    if (name == "if") return ParseIf(offset, begin, out);
    if (name == "set") return ParseSet(offset, begin, out);
    if (name == "macro") return ParseMacro(offset, begin, out);
    if (name == "filter") return ParseFilterBlock(offset, begin, out);
    if (name == "generation") {
      auto stmt = std::make_unique<Stmt>(Stmt::Kind::kBlock, offset);
      if (!ExpectStmtEnd()) return;
      std::string found;
      ParseBlock(&stmt->body, {"endgeneration"}, begin, "generation", &found);
      if (!ExpectStmtEnd()) return;
      out->push_back(std::move(stmt));
      return;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) {
        Fail(name_token, absl::StrCat("'", name, "' outside a for loop"));
        return;
      }
      out->push_back(std::make_unique<Stmt>(
          name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue,
          offset));
      ExpectStmtEnd();
      return;
    }
    static constexpr absl::string_view kUnsupported[] = {
        "include", "extends", "import", "from",       "block", "call",
        "raw",     "with",    "do",     "autoescape", "trans", "pluralize"};
    for (absl::string_view u : kUnsupported) {
      if (name == u) {
        Fail(name_token,
             absl::StrCat("'{% ", name,
                          " %}' is not supported in chat templates"));
        return;
      }
    }
    static constexpr absl::string_view kClosers[] = {
        "endfor",   "endif",     "elif",          "else",     "endset",
        "endmacro", "endfilter", "endgeneration", "endblock", "endcall",
        "endraw",   "endwith",   "endautoescape", "endtrans"};
    for (absl::string_view c : kClosers) {
      if (name == c) {
        Fail(name_token, absl::StrCat("unexpected '{% ", name,
                                      " %}' (no open block it closes)"));
        return;
      }
    }
    Fail(name_token, absl::StrCat("unknown tag '", name, "'"));
  }

  void ParseIf(size_t offset, const Token& opener, Block* out) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kIf, offset);
    ExprPtr cond = ParseTuple(true, false, TupleEnd::kDefault);
    if (!ExpectStmtEnd()) return;
    while (ok()) {
      Block block;
      std::string found;
      ParseBlock(&block, {"elif", "else", "endif"}, opener, "if", &found);
      if (!ok()) return;
      stmt->conditions.push_back(std::move(cond));
      stmt->blocks.push_back(std::move(block));
      if (found == "elif") {
        cond = ParseTuple(true, false, TupleEnd::kDefault);
        if (!ExpectStmtEnd()) return;
        continue;
      }
      if (found == "else") {
        if (!ExpectStmtEnd()) return;
        ParseBlock(&stmt->else_block, {"endif"}, opener, "if", &found);
      }
      if (!ExpectStmtEnd()) return;
      break;
    }
    out->push_back(std::move(stmt));
  }

  bool ParseTarget(bool allow_namespace, Target* target) {
    if (allow_namespace && Peek().kind == TokenKind::kName && IsOp(".", 1) &&
        Peek(2).kind == TokenKind::kName) {
      target->names.push_back(Next().text);
      Next();
      target->attr = Next().text;
      return true;
    }
    const bool parenthesized = IsOp("(");
    if (parenthesized) Next();
    while (ok()) {
      const Token& t = Peek();
      std::string name;
      if (!ExpectName(&name)) return false;
      if (name == "true" || name == "false" || name == "none" ||
          name == "True" || name == "False" || name == "None") {
        Fail(t, absl::StrCat("cannot assign to '", name, "'"));
        return false;
      }
      target->names.push_back(name);
      if (!IsOp(",")) break;
      Next();
      target->unpack = true;
      if (Peek().kind != TokenKind::kName) break;  // trailing comma
    }
    if (parenthesized && !ExpectOp(")")) return false;
    return ok();
  }

  void ParseFor(size_t offset, const Token& opener, Block* out) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFor, offset);
    if (!ParseTarget(false, &stmt->target)) return;
    if (!IsName("in")) {
      Fail(Peek(), absl::StrCat("expected 'in', got ", Describe(Peek())));
      return;
    }
    Next();
    stmt->expr = ParseTuple(false, false, TupleEnd::kForIterable);
    if (!ok()) return;
    if (IsName("if")) {
      Next();
      stmt->filter = ParseExpression(true);
      if (!ok()) return;
    }
    if (IsName("recursive")) {
      Fail(Peek(), "recursive for loops are not supported in chat templates");
      return;
    }
    if (!ExpectStmtEnd()) return;
    stmt->uses_loop = false;
    for_stack_.push_back(stmt.get());
    ++loop_depth_;
    std::string found;
    ParseBlock(&stmt->body, {"else", "endfor"}, opener, "for", &found);
    --loop_depth_;
    for_stack_.pop_back();
    if (!ok()) return;
    if (found == "else") {
      if (!ExpectStmtEnd()) return;
      ParseBlock(&stmt->else_block, {"endfor"}, opener, "for", &found);
    }
    if (!ExpectStmtEnd()) return;
    out->push_back(std::move(stmt));
  }

  // A chain of filters over a null operand: `name(args) | name ...`.
  ExprPtr ParseFilterChain(bool leading_pipe) {
    ExprPtr chain;
    bool first = true;
    while (ok() && (first ? (!leading_pipe || IsOp("|")) : IsOp("|"))) {
      if (!first || leading_pipe) Next();  // |
      first = false;
      chain = ParseFilter(std::move(chain), Peek().offset);
    }
    return chain;
  }

  void ParseSet(size_t offset, const Token& opener, Block* out) {
    Target target;
    if (!ParseTarget(true, &target)) return;
    if (IsOp("=")) {
      Next();
      auto stmt = std::make_unique<Stmt>(Stmt::Kind::kSet, offset);
      stmt->target = std::move(target);
      stmt->expr = ParseTuple(true, false, TupleEnd::kDefault);
      if (!ExpectStmtEnd()) return;
      out->push_back(std::move(stmt));
      return;
    }
    if (target.unpack) {
      Fail(Peek(), absl::StrCat("expected '=', got ", Describe(Peek())));
      return;
    }
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kSetBlock, offset);
    stmt->target = std::move(target);
    if (IsOp("|")) stmt->filter = ParseFilterChain(true);
    if (!ExpectStmtEnd()) return;
    std::string found;
    ParseBlock(&stmt->body, {"endset"}, opener, "set", &found);
    if (!ExpectStmtEnd()) return;
    out->push_back(std::move(stmt));
  }

  void ParseFilterBlock(size_t offset, const Token& opener, Block* out) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFilterBlock, offset);
    stmt->filter = ParseFilterChain(false);
    if (!ExpectStmtEnd()) return;
    std::string found;
    ParseBlock(&stmt->body, {"endfilter"}, opener, "filter", &found);
    if (!ExpectStmtEnd()) return;
    out->push_back(std::move(stmt));
  }

  void ParseMacro(size_t offset, const Token& opener, Block* out) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kMacro, offset);
    if (!ExpectName(&stmt->name)) return;
    if (!ExpectOp("(")) return;
    bool seen_default = false;
    while (ok() && !IsOp(")")) {
      MacroParam param;
      const Token& at = Peek();
      if (!ExpectName(&param.name)) return;
      for (const MacroParam& p : stmt->params) {
        if (p.name == param.name) {
          Fail(at, absl::StrCat("duplicate parameter '", param.name, "'"));
          return;
        }
      }
      if (IsOp("=")) {
        Next();
        param.default_value = ParseExpression(true);
        if (!ok()) return;
        seen_default = true;
      } else if (seen_default) {
        Fail(at, "non-default parameter follows a default parameter");
        return;
      }
      stmt->params.push_back(std::move(param));
      if (!IsOp(",")) break;
      Next();
    }
    if (!ExpectOp(")") || !ExpectStmtEnd()) return;
    macro_stack_.push_back(stmt.get());
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    ParseBlock(&stmt->body, {"endmacro"}, opener, "macro", &found);
    loop_depth_ = saved_loop_depth;
    macro_stack_.pop_back();
    if (!ExpectStmtEnd()) return;
    out->push_back(std::move(stmt));
  }

  // ---- Expressions ---------------------------------------------------

  bool IsTupleEnd(TupleEnd end) const {
    const Token& t = Peek();
    if (t.kind == TokenKind::kExprEnd || t.kind == TokenKind::kStmtEnd ||
        t.kind == TokenKind::kEof || IsOp(")")) {
      return true;
    }
    return end == TupleEnd::kForIterable &&
           (IsName("if") || IsName("recursive"));
  }

  // An expression or a bare tuple `a, b` (`()` / `(a,)` with parentheses).
  ExprPtr ParseTuple(bool with_condexpr, bool explicit_parens, TupleEnd end) {
    const size_t offset = Peek().offset;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (ok()) {
      if (!items.empty() && !ExpectOp(",")) return nullptr;
      if (IsTupleEnd(end)) break;
      ExprPtr item = ParseExpression(with_condexpr);
      if (!ok()) return nullptr;
      items.push_back(std::move(item));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!ok()) return nullptr;
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) {
        return Fail(Peek(), absl::StrCat("expected an expression, got ",
                                         Describe(Peek())));
      }
    }
    auto node = std::make_unique<Expr>(Expr::Kind::kList, offset);
    node->items = std::move(items);
    node->is_tuple = true;
    return Finish(std::move(node));
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    DepthGuard guard(this);
    if (!ok()) return nullptr;
    return with_condexpr ? ParseCondition() : ParseOr();
  }

  ExprPtr ParseCondition() {
    ExprPtr expr = ParseOr();
    while (ok() && IsName("if")) {
      const size_t offset = expr->offset;
      Next();
      ExprPtr cond = ParseOr();
      ExprPtr otherwise;
      if (ok() && IsName("else")) {
        Next();
        otherwise = ParseExpression(true);
      }
      if (!ok()) return nullptr;
      auto node = std::make_unique<Expr>(Expr::Kind::kCondition, offset);
      node->items.push_back(std::move(expr));
      node->items.push_back(std::move(cond));
      node->items.push_back(std::move(otherwise));
      expr = Finish(std::move(node));
    }
    return ok() ? std::move(expr) : nullptr;
  }

  ExprPtr ParseLogical(Expr::Kind kind, absl::string_view word,
                       ExprPtr (Parser::*operand)()) {
    ExprPtr first = (this->*operand)();
    if (!ok() || !IsName(word)) return first;
    auto node = std::make_unique<Expr>(kind, first->offset);
    node->items.push_back(std::move(first));
    while (ok() && IsName(word)) {
      Next();
      ExprPtr next = (this->*operand)();
      if (!ok()) return nullptr;
      node->items.push_back(std::move(next));
    }
    return Finish(std::move(node));
  }

  ExprPtr ParseOr() {
    return ParseLogical(Expr::Kind::kOr, "or", &Parser::ParseAnd);
  }
  ExprPtr ParseAnd() {
    return ParseLogical(Expr::Kind::kAnd, "and", &Parser::ParseNot);
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      const size_t offset = Next().offset;
      DepthGuard guard(this);
      ExprPtr operand = ParseNot();
      if (!ok()) return nullptr;
      auto node = std::make_unique<Expr>(Expr::Kind::kUnary, offset);
      node->name = "not";
      node->items.push_back(std::move(operand));
      return Finish(std::move(node));
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr first = ParseMath1();
    if (!ok()) return nullptr;
    std::unique_ptr<Expr> node;
    while (ok()) {
      std::string op;
      const Token& t = Peek();
      if (t.kind == TokenKind::kOp &&
          (t.text == "==" || t.text == "!=" || t.text == "<" ||
           t.text == "<=" || t.text == ">" || t.text == ">=")) {
        op = t.text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && IsName("in", 1)) {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      if (node == nullptr) {
        node = std::make_unique<Expr>(Expr::Kind::kCompare, first->offset);
        node->items.push_back(std::move(first));
      }
      ExprPtr operand = ParseMath1();
      if (!ok()) return nullptr;
      node->ops.push_back(op);
      node->items.push_back(std::move(operand));
    }
    if (!ok()) return nullptr;
    if (node == nullptr) return first;
    return Finish(std::move(node));
  }

  ExprPtr ParseBinaryLevel(std::initializer_list<absl::string_view> ops,
                           ExprPtr (Parser::*operand)()) {
    ExprPtr first = (this->*operand)();
    if (!ok()) return nullptr;
    std::unique_ptr<Expr> node;
    while (ok()) {
      const Token& t = Peek();
      bool match = false;
      if (t.kind == TokenKind::kOp) {
        for (absl::string_view op : ops) match = match || t.text == op;
      }
      if (!match) break;
      const std::string op = Next().text;
      if (node == nullptr) {
        node = std::make_unique<Expr>(Expr::Kind::kBinary, first->offset);
        node->items.push_back(std::move(first));
      }
      ExprPtr next = (this->*operand)();
      if (!ok()) return nullptr;
      node->ops.push_back(op);
      node->items.push_back(std::move(next));
    }
    if (!ok()) return nullptr;
    if (node == nullptr) return first;
    return Finish(std::move(node));
  }

  ExprPtr ParseMath1() {
    return ParseBinaryLevel({"+", "-"}, &Parser::ParseConcat);
  }
  ExprPtr ParseConcat() { return ParseBinaryLevel({"~"}, &Parser::ParseMath2); }
  ExprPtr ParseMath2() {
    return ParseBinaryLevel({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  ExprPtr ParsePow() {
    return ParseBinaryLevel({"**"}, &Parser::ParseUnaryWithFilter);
  }
  ExprPtr ParseUnaryWithFilter() { return ParseUnary(true); }

  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& op = Next();
      DepthGuard guard(this);
      ExprPtr operand = ParseUnary(false);
      if (!ok()) return nullptr;
      node = std::make_unique<Expr>(Expr::Kind::kUnary, op.offset);
      node->name = op.text;
      node->items.push_back(std::move(operand));
      node = Finish(std::move(node));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return ok() ? std::move(node) : nullptr;
  }

  ExprPtr ParsePrimary() {
    if (!ok()) return nullptr;
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        auto node = std::make_unique<Expr>(Expr::Kind::kLiteral, t.offset);
        if (t.text == "true" || t.text == "True") {
          node->value = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          node->value = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          node->value = Value::None();
        } else {
          node->kind = Expr::Kind::kName;
          node->name = t.text;
          NoteName(t.text);
        }
        return node;
      }
      case TokenKind::kString: {
        std::string value = Next().text;
        while (Peek().kind == TokenKind::kString) value += Next().text;
        auto node = std::make_unique<Expr>(Expr::Kind::kLiteral, t.offset);
        node->value = Value::String(std::move(value));
        return node;
      }
      case TokenKind::kInt: {
        Next();
        auto node = std::make_unique<Expr>(Expr::Kind::kLiteral, t.offset);
        node->value = Value::Int(t.int_value);
        return node;
      }
      case TokenKind::kFloat: {
        Next();
        auto node = std::make_unique<Expr>(Expr::Kind::kLiteral, t.offset);
        node->value = Value::Float(t.float_value);
        return node;
      }
      case TokenKind::kOp:
        if (t.text == "(") {
          Next();
          DepthGuard guard(this);
          ExprPtr node = ParseTuple(true, true, TupleEnd::kDefault);
          if (!ExpectOp(")")) return nullptr;
          return node;
        }
        if (t.text == "[") return ParseListLiteral();
        if (t.text == "{") return ParseDictLiteral();
        break;
      default:
        break;
    }
    return Fail(t, absl::StrCat("expected an expression, got ", Describe(t)));
  }

  void NoteName(const std::string& name) {
    if (!macro_stack_.empty()) {
      if (name == "varargs") macro_stack_.back()->uses_varargs = true;
      if (name == "kwargs") macro_stack_.back()->uses_kwargs = true;
    }
    if (name == "loop") {
      for (Stmt* s : for_stack_) s->uses_loop = true;
    }
  }

  ExprPtr ParseListLiteral() {
    const size_t offset = Next().offset;  // [
    DepthGuard guard(this);
    auto node = std::make_unique<Expr>(Expr::Kind::kList, offset);
    while (ok() && !IsOp("]")) {
      if (!node->items.empty()) {
        if (!ExpectOp(",")) return nullptr;
        if (IsOp("]")) break;
      }
      ExprPtr item = ParseExpression(true);
      if (!ok()) return nullptr;
      node->items.push_back(std::move(item));
    }
    if (!ExpectOp("]")) return nullptr;
    return Finish(std::move(node));
  }

  ExprPtr ParseDictLiteral() {
    const size_t offset = Next().offset;  // {
    DepthGuard guard(this);
    auto node = std::make_unique<Expr>(Expr::Kind::kDict, offset);
    while (ok() && !IsOp("}")) {
      if (!node->items.empty()) {
        if (!ExpectOp(",")) return nullptr;
        if (IsOp("}")) break;
      }
      ExprPtr key = ParseExpression(true);
      if (!ExpectOp(":")) return nullptr;
      ExprPtr value = ParseExpression(true);
      if (!ok()) return nullptr;
      node->items.push_back(std::move(key));
      node->items.push_back(std::move(value));
    }
    if (!ExpectOp("}")) return nullptr;
    return Finish(std::move(node));
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (ok()) {
      if (IsOp(".")) {
        Next();
        const Token& t = Peek();
        if (t.kind == TokenKind::kName) {
          Next();
          auto attr =
              std::make_unique<Expr>(Expr::Kind::kGetAttr, node->offset);
          attr->name = t.text;
          attr->items.push_back(std::move(node));
          node = Finish(std::move(attr));
        } else if (t.kind == TokenKind::kInt) {
          Next();
          auto index = std::make_unique<Expr>(Expr::Kind::kLiteral, t.offset);
          index->value = Value::Int(t.int_value);
          auto item =
              std::make_unique<Expr>(Expr::Kind::kGetItem, node->offset);
          item->items.push_back(std::move(node));
          item->items.push_back(std::move(index));
          node = Finish(std::move(item));
        } else {
          return Fail(
              t, absl::StrCat("expected a name after '.', got ", Describe(t)));
        }
      } else if (IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        break;
      }
    }
    return ok() ? std::move(node) : nullptr;
  }

  ExprPtr ParseSubscript(ExprPtr object) {
    const size_t offset = object->offset;
    Next();  // [
    DepthGuard guard(this);
    ExprPtr parts[3];
    int part = 0;
    bool is_slice = false;
    while (ok()) {
      if (IsOp(":")) {
        Next();
        is_slice = true;
        if (++part > 2) return Fail(Peek(), "too many ':' in a slice");
        continue;
      }
      if (IsOp("]")) break;
      if (parts[part] != nullptr) {
        return Fail(Peek(),
                    absl::StrCat("expected ']', got ", Describe(Peek())));
      }
      parts[part] = ParseExpression(true);
    }
    if (!ExpectOp("]")) return nullptr;
    if (!is_slice) {
      if (parts[0] == nullptr) return FailAt(offset, "empty subscript");
      auto node = std::make_unique<Expr>(Expr::Kind::kGetItem, offset);
      node->items.push_back(std::move(object));
      node->items.push_back(std::move(parts[0]));
      return Finish(std::move(node));
    }
    auto node = std::make_unique<Expr>(Expr::Kind::kSlice, offset);
    node->items.push_back(std::move(object));
    for (ExprPtr& p : parts) node->items.push_back(std::move(p));
    return Finish(std::move(node));
  }

  // Arguments of a call, filter or test, after its "(".
  bool ParseArgs(std::vector<std::pair<std::string, ExprPtr>>* args) {
    Next();  // (
    DepthGuard guard(this);
    bool seen_keyword = false;
    while (ok() && !IsOp(")")) {
      if (!args->empty()) {
        if (!ExpectOp(",")) return false;
        if (IsOp(")")) break;
      }
      if (IsOp("*") || IsOp("**")) {
        Fail(Peek(), "*args and **kwargs in calls are not supported");
        return false;
      }
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        std::string name = Next().text;
        Next();  // =
        ExprPtr value = ParseExpression(true);
        if (!ok()) return false;
        for (const auto& arg : *args) {
          if (arg.first == name) {
            FailAt(value->offset,
                   absl::StrCat("keyword argument '", name, "' repeated"));
            return false;
          }
        }
        args->emplace_back(std::move(name), std::move(value));
        seen_keyword = true;
        continue;
      }
      const Token& at = Peek();
      ExprPtr value = ParseExpression(true);
      if (!ok()) return false;
      if (seen_keyword) {
        Fail(at, "positional argument follows keyword argument");
        return false;
      }
      args->emplace_back("", std::move(value));
    }
    return ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto node = std::make_unique<Expr>(Expr::Kind::kCall, callee->offset);
    node->items.push_back(std::move(callee));
    if (!ParseArgs(&node->args)) return nullptr;
    return Finish(std::move(node));
  }

  // Dotted name of a filter or test.
  bool ParseDottedName(std::string* name) {
    if (!ExpectName(name)) return false;
    while (IsOp(".") && Peek(1).kind == TokenKind::kName) {
      Next();
      absl::StrAppend(name, ".", Next().text);
    }
    return true;
  }

  ExprPtr ParseFilter(ExprPtr operand, size_t offset) {
    auto node = std::make_unique<Expr>(
        Expr::Kind::kFilter, operand != nullptr ? operand->offset : offset);
    node->items.push_back(std::move(operand));
    if (!ParseDottedName(&node->name)) return nullptr;
    if (IsOp("(") && !ParseArgs(&node->args)) return nullptr;
    return Finish(std::move(node));
  }

  ExprPtr ParseTest(ExprPtr operand) {
    Next();  // is
    auto node = std::make_unique<Expr>(Expr::Kind::kTest, operand->offset);
    node->items.push_back(std::move(operand));
    if (IsName("not")) {
      Next();
      node->negated = true;
    }
    if (!ParseDottedName(&node->name)) return nullptr;
    const Token& t = Peek();
    if (IsOp("(")) {
      if (!ParseArgs(&node->args)) return nullptr;
    } else if ((t.kind == TokenKind::kName || t.kind == TokenKind::kString ||
                t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat ||
                IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) return Fail(t, "cannot chain tests with 'is'");
      DepthGuard guard(this);
      ExprPtr arg = ParsePostfix(ParsePrimary());
      if (!ok()) return nullptr;
      node->args.emplace_back("", std::move(arg));
    }
    return Finish(std::move(node));
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (ok()) {
      if (IsOp("|")) {
        const size_t offset = Next().offset;
        node = ParseFilter(std::move(node), offset);
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        break;
      }
    }
    return ok() ? std::move(node) : nullptr;
  }

  absl::string_view source_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<Stmt*> macro_stack_;
  std::vector<Stmt*> for_stack_;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(
    absl::string_view source) {
  auto tmpl = std::make_unique<Template>();
  tmpl->source = NormalizeSource(source);
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(tmpl->source);
  if (!tokens.ok()) return tokens.status();
  Parser parser(tmpl->source, *std::move(tokens));
  absl::StatusOr<Block> body = parser.ParseAll();
  if (!body.ok()) return body.status();
  tmpl->body = *std::move(body);
  return tmpl;
}

}  // namespace jinja
}  // namespace longctx
