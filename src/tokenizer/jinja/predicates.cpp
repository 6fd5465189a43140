#include "tokenizer/jinja/predicates.h"

#include <algorithm>
#include <string_view>

#include "tokenizer/jinja/access.h"
#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

constexpr std::string_view kTests[] = {
    "defined", "undefined",   "none",    "boolean",     "true",     "false",    "integer",  "float",
    "number",  "string",      "mapping", "iterable",    "sequence", "callable", "sameas",   "eq",
    "equalto", "==",          "ne",      "!=",          "lt",       "<",        "lessthan", "le",
    "<=",      "gt",          ">",       "greaterthan", "ge",       ">=",       "in",       "odd",
    "even",    "divisibleby", "lower",   "upper",       "escaped"};

const Value& other_arg(const CallArgs& args, const std::string& test) {
  if (args.positional.size() != 1 || !args.keyword.empty())
    throw EvalError("test '" + test + "' takes exactly one argument");
  return args.positional[0];
}

void no_args(const CallArgs& args, const std::string& test) {
  if (!args.positional.empty() || !args.keyword.empty())
    throw EvalError("test '" + test + "' takes no arguments");
}

int64_t integer_operand(const Value& value, const std::string& test) {
  if (!value.is_int())
    throw EvalError("test '" + test + "' needs an integer, got " + value.type_name());
  return value.as_int();
}

}  // namespace

bool has_test(const std::string& name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

bool apply_test(const std::string& name, const Value& value, const CallArgs& args) {
  using Kind = Value::Kind;
  if (name == "eq" || name == "equalto" || name == "==")
    return values_equal(value, other_arg(args, name));
  if (name == "ne" || name == "!=") return !values_equal(value, other_arg(args, name));
  if (name == "lt" || name == "<" || name == "lessthan")
    return compare_values(value, other_arg(args, name)) < 0;
  if (name == "le" || name == "<=") return compare_values(value, other_arg(args, name)) <= 0;
  if (name == "gt" || name == ">" || name == "greaterthan")
    return compare_values(value, other_arg(args, name)) > 0;
  if (name == "ge" || name == ">=") return compare_values(value, other_arg(args, name)) >= 0;
  if (name == "in") return contains(other_arg(args, name), value);
  if (name == "sameas") {
    const Value& other = other_arg(args, name);
    if (value.identity() != nullptr || other.identity() != nullptr)
      return value.identity() == other.identity();
    // Python's `is` for None, True, False (and small ints, which we treat as equal values).
    return value.kind() == other.kind() && values_equal(value, other);
  }
  if (name == "divisibleby") {
    const int64_t divisor = integer_operand(other_arg(args, name), name);
    if (divisor == 0) throw EvalError("divisibleby(0): division by zero");
    return integer_operand(value, name) % divisor == 0;
  }
  no_args(args, name);
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "boolean") return value.is_bool();
  if (name == "true") return value.is_bool() && value.as_bool();
  if (name == "false") return value.is_bool() && !value.as_bool();
  if (name == "integer") return value.kind() == Kind::Int;
  if (name == "float") return value.kind() == Kind::Float;
  if (name == "number") return value.is_number();  // bool counts, as in Python
  if (name == "string") return value.is_string();
  if (name == "mapping") return value.is_mapping();
  // Jinja's Undefined is iterable (empty) and passes the sequence test (it has len and getitem).
  if (name == "iterable" || name == "sequence")
    return value.is_string() || value.is_sequence() || value.is_mapping() || value.is_undefined();
  if (name == "callable") return value.is_callable();
  if (name == "odd") return integer_operand(value, name) % 2 != 0;
  if (name == "even") return integer_operand(value, name) % 2 == 0;
  if (name == "lower")
    return value.str() == lower(value.str()) && upper(value.str()) != value.str();
  if (name == "upper")
    return value.str() == upper(value.str()) && lower(value.str()) != value.str();
  if (name == "escaped") return false;
  throw EvalError("unknown test '" + name + "'");
}

}  // namespace dsv3::jinja
