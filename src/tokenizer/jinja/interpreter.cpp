#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <memory>

#include "tokenizer/jinja/access.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/filters.h"
#include "tokenizer/jinja/methods.h"
#include "tokenizer/jinja/predicates.h"

namespace dsv3::jinja {

namespace {

struct Scope {
  std::shared_ptr<Scope> parent;
  DictData variables;
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { Normal, Break, Continue };

ScopePtr child_scope(const ScopePtr& parent) {
  auto scope = std::make_shared<Scope>();
  scope->parent = parent;
  return scope;
}

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits) : limits_(limits) {}

  std::string run(const Body& program, const Value& context) {
    auto builtins = std::make_shared<Scope>();
    BuiltinOptions options;
    options.max_range_size = limits_.max_range_size;
    if (const Value* epoch = context.entries().find("strftime_now_epoch"); epoch && epoch->is_int())
      options.fixed_epoch_seconds = epoch->as_int();
    add_builtins(builtins->variables, options);
    ScopePtr globals = child_scope(builtins);
    for (const auto& [name, value] : context.entries().entries) globals->variables.set(name, value);
    std::string out;
    exec_body(program, globals, out);
    return out;
  }

 private:
  struct DepthGuard {
    int& depth;
    DepthGuard(int& counter, int limit) : depth(counter) {
      if (++depth > limit) {
        --depth;
        throw EvalError("template evaluation nested too deeply (more than " +
                        std::to_string(limit) + " levels)");
      }
    }
    ~DepthGuard() { --depth; }
  };

  void append(std::string& out, std::string_view text) const {
    if (out.size() + text.size() > limits_.max_output_bytes)
      throw EvalError("output longer than " + std::to_string(limits_.max_output_bytes) + " bytes");
    out += text;
  }

  Value check_string_size(std::string text) const {
    if (text.size() > limits_.max_output_bytes)
      throw EvalError("string longer than " + std::to_string(limits_.max_output_bytes) + " bytes");
    return Value::string(std::move(text));
  }

  void count_iteration() {
    if (++loop_iterations_ > limits_.max_loop_iterations)
      throw EvalError("more than " + std::to_string(limits_.max_loop_iterations) +
                      " loop iterations");
  }

  static Value lookup(const ScopePtr& scope, const std::string& name) {
    for (const Scope* current = scope.get(); current != nullptr; current = current->parent.get())
      if (const Value* found = current->variables.find(name)) return *found;
    return Value::undefined(name);
  }

  // ---- statements -------------------------------------------------------------------------

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& stmt : body) {
      const Flow flow = exec(*stmt, scope, out);
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
    try {
      DepthGuard guard(eval_depth_, limits_.max_eval_depth);
      return exec_statement(stmt, scope, out);
    } catch (const TemplateRaised& raised) {
      throw Error(
          positioned_message(stmt.position, std::string("raise_exception: ") + raised.what()));
    } catch (const EvalError& error) {
      throw Error(positioned_message(stmt.position, error.what()));
    }
  }

  Flow exec_statement(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
    switch (stmt.kind) {
      case Stmt::Kind::Text:
        append(out, stmt.text);
        return Flow::Normal;
      case Stmt::Kind::Output:
        append(out, eval(*stmt.expr, scope).str());
        return Flow::Normal;
      case Stmt::Kind::If:
        for (const auto& [condition, body] : stmt.branches)
          if (eval(*condition, scope).truthy()) return exec_body(body, scope, out);
        return exec_body(stmt.else_body, scope, out);
      case Stmt::Kind::For:
        exec_for(stmt, scope, out);
        return Flow::Normal;
      case Stmt::Kind::Set:
        exec_set(stmt, scope, eval(*stmt.expr, scope));
        return Flow::Normal;
      case Stmt::Kind::SetBlock: {
        std::string captured;
        exec_body(stmt.body, scope, captured);
        Value value = Value::string(std::move(captured));
        for (const auto& filter : stmt.filters) value = apply_filter_expr(*filter, value, scope);
        exec_set(stmt, scope, std::move(value));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro:
        scope->variables.set(stmt.text, make_macro(stmt, stmt.text, scope));
        return Flow::Normal;
      case Stmt::Kind::CallBlock: {
        const Value caller = make_macro(stmt, "caller", scope);
        append(out, eval_call(*stmt.expr, scope, &caller).str());
        return Flow::Normal;
      }
      case Stmt::Kind::FilterBlock: {
        std::string captured;
        exec_body(stmt.body, scope, captured);
        Value value = Value::string(std::move(captured));
        for (const auto& filter : stmt.filters) value = apply_filter_expr(*filter, value, scope);
        append(out, value.str());
        return Flow::Normal;
      }
      case Stmt::Kind::With: {
        ScopePtr inner = child_scope(scope);
        for (size_t i = 0; i < stmt.targets.size(); ++i)
          inner->variables.set(stmt.targets[i], eval(*stmt.with_values[i], scope));
        return exec_body(stmt.body, inner, out);
      }
      case Stmt::Kind::Break:
        return Flow::Break;
      case Stmt::Kind::Continue:
        return Flow::Continue;
    }
    return Flow::Normal;
  }

  static void bind_targets(const std::vector<std::string>& targets, const Value& value,
                           DictData& variables) {
    if (targets.size() == 1) {
      variables.set(targets[0], value);
      return;
    }
    const std::vector<Value> parts =
        value.is_sequence() || value.is_string() ? iterate(value) : std::vector<Value>{};
    if (!value.is_sequence() && !value.is_string())
      throw EvalError(std::string("cannot unpack a ") + value.type_name() + " into " +
                      std::to_string(targets.size()) + " names");
    if (parts.size() != targets.size())
      throw EvalError("cannot unpack " + std::to_string(parts.size()) + " values into " +
                      std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) variables.set(targets[i], parts[i]);
  }

  void exec_set(const Stmt& stmt, const ScopePtr& scope, Value value) {
    if (stmt.text.empty()) {
      bind_targets(stmt.targets, value, scope->variables);
      return;
    }
    const Value target = lookup(scope, stmt.targets[0]);
    if (target.kind() != Value::Kind::Namespace)
      throw EvalError("cannot assign attribute '" + stmt.text + "' on '" + stmt.targets[0] +
                      "': it is " +
                      (target.is_undefined() ? std::string("undefined")
                                             : std::string("of type ") + target.type_name()) +
                      ", not a namespace()");
    target.entries().set(stmt.text, std::move(value));
  }

  void exec_for(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
    const Value iterable = eval(*stmt.expr, scope);
    std::vector<Value> items = iterate(iterable);
    if (stmt.condition) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        count_iteration();
        ScopePtr filter_scope = child_scope(scope);
        bind_targets(stmt.targets, item, filter_scope->variables);
        if (eval(*stmt.condition, filter_scope).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec_body(stmt.else_body, child_scope(scope), out);
      return;
    }
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      count_iteration();
      ScopePtr iteration = child_scope(scope);
      bind_targets(stmt.targets, items[i], iteration->variables);
      Value loop = Value::dict();
      DictData& fields = loop.entries();
      fields.set("index", Value::integer(i + 1));
      fields.set("index0", Value::integer(i));
      fields.set("revindex", Value::integer(length - i));
      fields.set("revindex0", Value::integer(length - i - 1));
      fields.set("first", Value::boolean(i == 0));
      fields.set("last", Value::boolean(i == length - 1));
      fields.set("length", Value::integer(length));
      fields.set("depth", Value::integer(1));
      fields.set("depth0", Value::integer(0));
      if (i > 0) fields.set("previtem", items[i - 1]);
      if (i + 1 < length) fields.set("nextitem", items[i + 1]);
      fields.set("cycle", Value::callable("loop.cycle", [i](const CallArgs& args) {
                   if (args.positional.empty())
                     throw EvalError("loop.cycle() needs at least one value");
                   return args.positional[static_cast<size_t>(i) % args.positional.size()];
                 }));
      iteration->variables.set("loop", std::move(loop));
      if (exec_body(stmt.body, iteration, out) == Flow::Break) break;
    }
  }

  // A macro (or the body of a call block, as `caller`) as a callable value. It holds its
  // defining scope weakly: scopes own the macros defined in them, and a strong reference
  // back would be a cycle that is never freed.
  Value make_macro(const Stmt& stmt, const std::string& name, const ScopePtr& scope) {
    std::weak_ptr<Scope> definition_scope = scope;
    const Stmt* definition = &stmt;
    return Value::callable(name, [this, definition, definition_scope, name](const CallArgs& args) {
      return call_macro(*definition, name, definition_scope, args);
    });
  }

  Value call_macro(const Stmt& macro, const std::string& name,
                   const std::weak_ptr<Scope>& definition_scope, const CallArgs& args) {
    ScopePtr parent = definition_scope.lock();
    if (!parent)
      throw EvalError("macro '" + name + "' called after the scope it was defined in ended");
    if (++macro_depth_ > limits_.max_macro_depth) {
      --macro_depth_;
      throw EvalError("macro calls nested more than " + std::to_string(limits_.max_macro_depth) +
                      " deep");
    }
    struct Release {
      int& depth;
      ~Release() { --depth; }
    } release{macro_depth_};
    if (args.positional.size() > macro.params.size())
      throw EvalError("macro '" + name + "' takes " + std::to_string(macro.params.size()) +
                      " arguments, got " + std::to_string(args.positional.size()));
    ScopePtr scope = child_scope(parent);
    for (const auto& [key, value] : args.keyword) {
      const bool known = key == "caller" ||
                         std::any_of(macro.params.begin(), macro.params.end(),
                                     [&](const MacroParam& param) { return param.name == key; });
      if (!known) throw EvalError("macro '" + name + "' has no parameter '" + key + "'");
    }
    for (size_t i = 0; i < macro.params.size(); ++i) {
      const MacroParam& param = macro.params[i];
      if (const Value* given = find_arg(args, i, param.name))
        scope->variables.set(param.name, *given);
      else if (param.default_value)
        scope->variables.set(param.name, eval(*param.default_value, scope));
      else
        scope->variables.set(param.name, Value::undefined(param.name));
    }
    for (const auto& [key, value] : args.keyword)
      if (key == "caller") scope->variables.set("caller", value);
    std::string out;
    exec_body(macro.body, scope, out);
    return Value::string(std::move(out));
  }

  // ---- expressions ------------------------------------------------------------------------

  Value eval(const Expr& expr, const ScopePtr& scope) {
    try {
      DepthGuard guard(eval_depth_, limits_.max_eval_depth);
      return eval_expression(expr, scope);
    } catch (const TemplateRaised& raised) {
      throw Error(
          positioned_message(expr.position, std::string("raise_exception: ") + raised.what()));
    } catch (const EvalError& error) {
      throw Error(positioned_message(expr.position, error.what()));
    }
  }

  CallArgs eval_args(const Expr& expr, size_t first_operand, const ScopePtr& scope) {
    CallArgs args;
    for (size_t i = first_operand; i < expr.operands.size(); ++i)
      args.positional.push_back(eval(*expr.operands[i], scope));
    for (const auto& [name, value] : expr.keyword_args)
      args.keyword.emplace_back(name, eval(*value, scope));
    return args;
  }

  Value apply_filter_expr(const Expr& filter, const Value& input, const ScopePtr& scope) {
    if (!has_filter(filter.name)) throw EvalError("unknown filter '" + filter.name + "'");
    const CallArgs args = eval_args(filter, 1, scope);
    Value result = apply_filter(filter.name, input, args);
    if (result.is_string() && result.as_string().size() > limits_.max_output_bytes)
      check_string_size(result.as_string());
    return result;
  }

  Value eval_call(const Expr& call, const ScopePtr& scope, const Value* caller) {
    const Expr& callee = *call.operands[0];
    CallArgs args;
    Value function;
    if (callee.kind == Expr::Kind::Attribute) {
      const Value object = eval(*callee.operands[0], scope);
      args = eval_args(call, 1, scope);
      if (caller) args.keyword.emplace_back("caller", *caller);
      if (has_method(object, callee.name)) return call_method(object, callee.name, args);
      function = get_attribute(object, callee.name);
    } else {
      function = eval(callee, scope);
      args = eval_args(call, 1, scope);
      if (caller) args.keyword.emplace_back("caller", *caller);
    }
    if (function.is_undefined()) fail_undefined(function);
    if (!function.is_callable())
      throw EvalError(std::string("'") + function.type_name() + "' object is not callable");
    return function.function().call(args);
  }

  std::optional<int64_t> slice_bound(const Expr* bound, const ScopePtr& scope) {
    if (bound == nullptr) return std::nullopt;
    const Value value = eval(*bound, scope);
    if (value.is_none()) return std::nullopt;
    if (!value.is_int())
      throw EvalError(std::string("slice indices must be integers or None, not ") +
                      value.type_name());
    return value.as_int();
  }

  Value eval_expression(const Expr& expr, const ScopePtr& scope) {
    switch (expr.kind) {
      case Expr::Kind::Literal:
        return expr.literal;
      case Expr::Kind::Name:
        return lookup(scope, expr.name);
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        std::vector<Value> items;
        for (const auto& operand : expr.operands) items.push_back(eval(*operand, scope));
        return expr.kind == Expr::Kind::List ? Value::list(std::move(items))
                                             : Value::tuple(std::move(items));
      }
      case Expr::Kind::Dict: {
        Value dict = Value::dict();
        for (size_t i = 0; i + 1 < expr.operands.size(); i += 2) {
          const Value key = eval(*expr.operands[i], scope);
          if (!key.is_string())
            throw EvalError(std::string("dict keys must be strings here, not ") + key.type_name());
          dict.entries().set(key.as_string(), eval(*expr.operands[i + 1], scope));
        }
        return dict;
      }
      case Expr::Kind::Attribute:
        return get_attribute(eval(*expr.operands[0], scope), expr.name);
      case Expr::Kind::Subscript: {
        const Value object = eval(*expr.operands[0], scope);
        return get_item(object, eval(*expr.operands[1], scope));
      }
      case Expr::Kind::Slice: {
        const Value object = eval(*expr.operands[0], scope);
        return get_slice(object, slice_bound(expr.operands[1].get(), scope),
                         slice_bound(expr.operands[2].get(), scope),
                         slice_bound(expr.operands[3].get(), scope));
      }
      case Expr::Kind::Call:
        return eval_call(expr, scope, nullptr);
      case Expr::Kind::Filter:
        return apply_filter_expr(expr, eval(*expr.operands[0], scope), scope);
      case Expr::Kind::Test: {
        if (!has_test(expr.name)) throw EvalError("unknown test '" + expr.name + "'");
        const Value subject = eval(*expr.operands[0], scope);
        const bool result = apply_test(expr.name, subject, eval_args(expr, 1, scope));
        return Value::boolean(result != expr.negated);
      }
      case Expr::Kind::Not:
        return Value::boolean(!eval(*expr.operands[0], scope).truthy());
      case Expr::Kind::Negate:
      case Expr::Kind::Plus: {
        const Value operand = eval(*expr.operands[0], scope);
        if (operand.is_undefined()) fail_undefined(operand);
        if (!operand.is_number())
          throw EvalError(std::string("bad operand type for unary ") +
                          (expr.kind == Expr::Kind::Negate ? "-" : "+") + ": '" +
                          operand.type_name() + "'");
        if (expr.kind == Expr::Kind::Plus)
          return operand.is_bool() ? Value::integer(operand.as_int()) : operand;
        if (operand.kind() == Value::Kind::Float) return Value::floating(-operand.as_number());
        if (operand.as_int() == INT64_MIN) throw EvalError("integer overflow");
        return Value::integer(-operand.as_int());
      }
      case Expr::Kind::Binary: {
        const Value left = eval(*expr.operands[0], scope);
        if (expr.name == "and") return left.truthy() ? eval(*expr.operands[1], scope) : left;
        if (expr.name == "or") return left.truthy() ? left : eval(*expr.operands[1], scope);
        return binary(expr.name, left, eval(*expr.operands[1], scope));
      }
      case Expr::Kind::Compare: {
        Value left = eval(*expr.operands[0], scope);
        for (size_t i = 0; i < expr.compare_ops.size(); ++i) {
          Value right = eval(*expr.operands[i + 1], scope);
          if (!compare(expr.compare_ops[i], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::Conditional:
        if (eval(*expr.operands[0], scope).truthy()) return eval(*expr.operands[1], scope);
        return expr.operands[2] ? eval(*expr.operands[2], scope)
                                : Value::undefined("conditional without else");
    }
    throw EvalError("unknown expression");
  }

  static bool compare(const std::string& op, const Value& left, const Value& right) {
    if (op == "==") return values_equal(left, right);
    if (op == "!=") return !values_equal(left, right);
    if (op == "in") return contains(right, left);
    if (op == "not in") return !contains(right, left);
    if (left.is_undefined()) fail_undefined(left);
    if (right.is_undefined()) fail_undefined(right);
    const int order = compare_values(left, right);
    if (op == "<") return order < 0;
    if (op == "<=") return order <= 0;
    if (op == ">") return order > 0;
    return order >= 0;
  }

  template <typename Operation>
  static int64_t checked(Operation operation, int64_t a, int64_t b) {
    int64_t result = 0;
    if (operation(a, b, &result)) throw EvalError("integer overflow (beyond 64 bits)");
    return result;
  }
  static bool add(int64_t a, int64_t b, int64_t* out) { return __builtin_add_overflow(a, b, out); }
  static bool subtract(int64_t a, int64_t b, int64_t* out) {
    return __builtin_sub_overflow(a, b, out);
  }
  static bool multiply(int64_t a, int64_t b, int64_t* out) {
    return __builtin_mul_overflow(a, b, out);
  }

  Value repeat(const Value& sequence, int64_t count) const {
    count = std::max<int64_t>(count, 0);
    if (sequence.is_string()) {
      if (count > 0 &&
          sequence.as_string().size() > limits_.max_output_bytes / static_cast<uint64_t>(count))
        throw EvalError("string longer than " + std::to_string(limits_.max_output_bytes) +
                        " bytes");
      std::string out;
      for (int64_t i = 0; i < count; ++i) out += sequence.as_string();
      return Value::string(std::move(out));
    }
    const auto& items = sequence.items();
    if (count > 0 &&
        items.size() > static_cast<uint64_t>(limits_.max_range_size) / static_cast<uint64_t>(count))
      throw EvalError("list repetition longer than " + std::to_string(limits_.max_range_size) +
                      " items");
    std::vector<Value> out;
    for (int64_t i = 0; i < count; ++i) out.insert(out.end(), items.begin(), items.end());
    return sequence.kind() == Value::Kind::Tuple ? Value::tuple(std::move(out))
                                                 : Value::list(std::move(out));
  }

  Value binary(const std::string& op, const Value& left, const Value& right) const {
    if (op == "~") return check_string_size(left.str() + right.str());
    if (left.is_undefined()) fail_undefined(left);
    if (right.is_undefined()) fail_undefined(right);
    const bool both_int = left.is_int() && right.is_int();
    const bool both_number = left.is_number() && right.is_number();
    if (op == "+") {
      if (both_int) return Value::integer(checked(add, left.as_int(), right.as_int()));
      if (both_number) return Value::floating(left.as_number() + right.as_number());
      if (left.is_string() && right.is_string())
        return check_string_size(left.as_string() + right.as_string());
      if (left.is_sequence() && right.kind() == left.kind()) {
        std::vector<Value> items = left.items();
        items.insert(items.end(), right.items().begin(), right.items().end());
        return left.kind() == Value::Kind::Tuple ? Value::tuple(std::move(items))
                                                 : Value::list(std::move(items));
      }
    } else if (op == "-") {
      if (both_int) return Value::integer(checked(subtract, left.as_int(), right.as_int()));
      if (both_number) return Value::floating(left.as_number() - right.as_number());
    } else if (op == "*") {
      if (both_int) return Value::integer(checked(multiply, left.as_int(), right.as_int()));
      if (both_number) return Value::floating(left.as_number() * right.as_number());
      if ((left.is_string() || left.is_sequence()) && right.is_int())
        return repeat(left, right.as_int());
      if (left.is_int() && (right.is_string() || right.is_sequence()))
        return repeat(right, left.as_int());
    } else if (op == "/") {
      if (both_number) {
        if (right.as_number() == 0.0) throw EvalError("division by zero");
        return Value::floating(left.as_number() / right.as_number());
      }
    } else if (op == "//" || op == "%") {
      if (both_number && right.as_number() == 0.0)
        throw EvalError(op == "//" ? "integer division by zero" : "modulo by zero");
      if (both_int) {
        const int64_t a = left.as_int();
        const int64_t b = right.as_int();
        if (a == INT64_MIN && b == -1) throw EvalError("integer overflow (beyond 64 bits)");
        int64_t quotient = a / b;
        int64_t remainder = a % b;
        if (remainder != 0 && ((remainder < 0) != (b < 0))) {  // Python floors toward -infinity
          --quotient;
          remainder += b;
        }
        return Value::integer(op == "//" ? quotient : remainder);
      }
      if (both_number) {
        const double a = left.as_number();
        const double b = right.as_number();
        if (op == "//") return Value::floating(std::floor(a / b));
        double remainder = std::fmod(a, b);
        if (remainder != 0.0 && ((remainder < 0) != (b < 0))) remainder += b;
        return Value::floating(remainder);
      }
      if (op == "%" && left.is_string())
        throw EvalError("unsupported: printf-style string formatting with '%'");
    } else if (op == "**") {
      if (both_int && right.as_int() >= 0) {
        int64_t power = 1;
        int64_t base = left.as_int();
        for (int64_t exponent = right.as_int(); exponent > 0; --exponent) {
          power = checked(multiply, power, base);
          if (power == 0 || power == 1) break;
          if (base == -1) {
            power = (right.as_int() % 2 == 0) ? 1 : -1;
            break;
          }
        }
        return Value::integer(power);
      }
      if (both_number) return Value::floating(std::pow(left.as_number(), right.as_number()));
    }
    throw EvalError("unsupported operand types for " + op + ": '" + left.type_name() + "' and '" +
                    right.type_name() + "'");
  }

  const RenderLimits& limits_;
  int64_t loop_iterations_ = 0;
  int eval_depth_ = 0;
  int macro_depth_ = 0;
};

}  // namespace

std::string render_program(const Body& program, const Value& context, const RenderLimits& limits) {
  if (!context.is_mapping()) throw Error("chat template: the render context must be a JSON object");
  return Interpreter(limits).run(program, context);
}

}  // namespace dsv3::jinja
