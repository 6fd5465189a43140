// The syntax tree of a parsed template: expressions and statements, each with the position of
// the token that started it (for error messages).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,    // literal
    Name,       // name
    List,       // operands: items
    Tuple,      // operands: items
    Dict,       // operands: key0, value0, key1, value1, ...
    Attribute,  // operands[0].name
    Subscript,  // operands[0][operands[1]]
    Slice,      // operands[0][operands[1]:operands[2]:operands[3]], absent parts null
    Call,       // operands[0](operands[1..], keyword_args)
    Filter,   // operands[0] | name(operands[1..], keyword_args); operands[0] null in a filter block
    Test,     // operands[0] is [not] name(operands[1..], keyword_args)
    Not,      // not operands[0]
    Negate,   // -operands[0]
    Plus,     // +operands[0]
    Binary,   // operands[0] op operands[1], op in + - * / // % ** ~ and or
    Compare,  // operands[0] ops[0] operands[1] ops[1] operands[2] ... (chained, like Python)
    Conditional,  // operands[1] if operands[0] else operands[2] (operands[2] may be null)
  };

  Kind kind = Kind::Literal;
  SourcePosition position;
  Value literal;
  std::string name;  // Name, Attribute, Filter, Test; the operator of Binary
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keyword_args;
  std::vector<std::string> compare_ops;  // ==, !=, <, <=, >, >=, in, not in
  bool negated = false;                  // Test: `is not`
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // branches (condition, body); else_body
    For,          // for targets in expr [if condition]: body; else_body
    Set,          // set targets = expr, or set targets[0].attribute = expr
    SetBlock,     // set targets[0] [| filters]: body; endset
    Macro,        // macro name(params): body
    CallBlock,    // call(params) expr: body, the body becoming `caller`
    FilterBlock,  // filter filters: body
    With,         // with targets[i] = with_values[i]: body
    Break,
    Continue,
  };

  Kind kind = Kind::Text;
  SourcePosition position;
  std::string text;  // Text: the literal; Macro: the name; Set: the attribute of `ns.attribute`
  ExprPtr expr;
  ExprPtr condition;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  std::vector<ExprPtr> with_values;
  std::vector<ExprPtr> filters;  // Filter expressions with a null input
  std::vector<MacroParam> params;
};

}  // namespace dsv3::jinja
