// Syntax tree of the chat-template interpreter (internal). Nodes keep the
// byte offset of their first token in the normalized source (for the line of
// a render error). Chains of one precedence level (a + b - c, a and b and c,
// a < b < c) are one node with a list of operands, so that a long chain does
// not make a deep tree; every tree is at most kMaxNesting deep (checked by
// the parser), which bounds the recursion of evaluating and destroying it.
#ifndef LONGCTX_MODEL_CHAT_TEMPLATE_AST_H_
#define LONGCTX_MODEL_CHAT_TEMPLATE_AST_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/chat_template/value.h"

namespace longctx {
namespace jinja {

// Deepest nesting of expressions (and of statements) the parser accepts.
inline constexpr int kMaxNesting = 256;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items (tuple: is_tuple)
    kDict,       // items as key, value pairs in `items` (even / odd)
    kUnary,      // op ("not", "-", "+"), items[0]
    kBinary,     // items[0] (ops[i-1] items[i])*: + - ~ * / // % **
    kAnd,        // items[0] and items[1] and ...
    kOr,         // items[0] or items[1] or ...
    kCompare,    // items[0] (ops[i-1] items[i])*: == != < <= > >= in notin
    kCondition,  // items[0] if items[1] else items[2] (items[2] may be null)
    kGetAttr,    // items[0].name
    kGetItem,    // items[0][items[1]]
    kSlice,      // items[0][items[1]:items[2]:items[3]] (null when omitted)
    kCall,       // items[0](args)
    kFilter,     // items[0] | name(args)
    kTest,       // items[0] is [not] name(args)
  };

  Kind kind;
  size_t offset = 0;
  // Height of the tree below this node (1 for a leaf).
  int depth = 1;

  Value value;       // kLiteral
  std::string name;  // kName, kGetAttr, kFilter, kTest, kUnary op
  std::vector<ExprPtr> items;
  std::vector<std::string> ops;  // kBinary, kCompare
  bool is_tuple = false;         // kList
  bool negated = false;          // kTest
  // Call, filter and test arguments: positional ones have an empty name.
  std::vector<std::pair<std::string, ExprPtr>> args;

  Expr(Kind k, size_t off) : kind(k), offset(off) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Block = std::vector<StmtPtr>;

// An assignment target: a name, a tuple of names, or namespace.attr.
struct Target {
  std::vector<std::string> names;  // one name unless unpacking
  bool unpack = false;             // `a, b = ...`
  std::string attr;                // set ns.attr: names[0] is ns
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> blocks[i]; else_block
    kFor,       // for target in expr [if filter]: body; else_block
    kSet,       // set target = expr
    kSetBlock,  // set target [| filters] %}body{% endset
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
    kFilterBlock,  // filter name(args) %}body{% endfilter (filters: expr)
    kBlock,        // a nested block without scope (generation)
  };

  Kind kind;
  size_t offset = 0;

  std::string text;                 // kText
  ExprPtr expr;                     // kOutput, kSet, kFor (iterable)
  ExprPtr filter;                   // kFor `if`; kSetBlock / kFilterBlock
                                    // filter chain over a null operand
  std::vector<ExprPtr> conditions;  // kIf
  std::vector<Block> blocks;        // kIf
  Block body;                       // kFor, kSetBlock, kMacro, kBlock
  Block else_block;                 // kIf, kFor
  Target target;                    // kFor, kSet, kSetBlock
  std::string name;                 // kMacro
  std::vector<MacroParam> params;   // kMacro
  bool uses_varargs = false;        // kMacro body reads `varargs`
  bool uses_kwargs = false;         // kMacro body reads `kwargs`
  bool uses_loop = true;            // kFor body may read `loop`

  Stmt(Kind k, size_t off) : kind(k), offset(off) {}
};

}  // namespace jinja
}  // namespace longctx

#endif  // LONGCTX_MODEL_CHAT_TEMPLATE_AST_H_
