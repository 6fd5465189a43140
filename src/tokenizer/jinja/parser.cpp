#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "util/error.h"

namespace dsv3::jinja {

namespace {

// Deeper nesting than this is refused so that a hostile template cannot exhaust the stack of
// the parser (or of the interpreter walking the tree).
constexpr int kMaxNesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_all() {
    Body body = parse_body({});
    if (current().type != TokenType::End) {
      // parse_body stopped at an end keyword nobody opened.
      fail(current(), "unexpected '" + current().text + "': no open block to close");
    }
    return body;
  }

 private:
  const Token& current() const { return tokens_[index_]; }
  const Token& peek(size_t ahead = 1) const {
    return tokens_[std::min(index_ + ahead, tokens_.size() - 1)];
  }
  const Token& advance() {
    const Token& token = tokens_[index_];
    if (index_ + 1 < tokens_.size()) ++index_;
    return token;
  }

  [[noreturn]] void fail(const Token& token, const std::string& message) const {
    throw Error(positioned_message(token.position, message));
  }

  static std::string describe(const Token& token) {
    switch (token.type) {
      case TokenType::End:
        return "end of template";
      case TokenType::BlockEnd:
        return "'%}'";
      case TokenType::VariableEnd:
        return "'}}'";
      case TokenType::Text:
        return "template text";
      case TokenType::String:
        return "string literal";
      default:
        return "'" + token.text + "'";
    }
  }

  bool at_operator(std::string_view op) const {
    return current().type == TokenType::Operator && current().text == op;
  }
  bool at_name(std::string_view name) const {
    return current().type == TokenType::Name && current().text == name;
  }
  bool skip_operator(std::string_view op) {
    if (!at_operator(op)) return false;
    advance();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    advance();
    return true;
  }
  void expect_operator(std::string_view op, std::string_view context) {
    if (!skip_operator(op))
      fail(current(), "expected '" + std::string(op) + "' " + std::string(context) + ", found " +
                          describe(current()));
  }
  std::string expect_name(std::string_view context) {
    if (current().type != TokenType::Name)
      fail(current(), "expected a name " + std::string(context) + ", found " + describe(current()));
    return advance().text;
  }
  void expect_block_end(std::string_view statement) {
    if (current().type != TokenType::BlockEnd)
      fail(current(),
           "expected '%}' to end '" + std::string(statement) + "', found " + describe(current()));
    advance();
  }

  struct DepthGuard {
    Parser& parser;
    explicit DepthGuard(Parser& owner, const Token& token) : parser(owner) {
      if (++parser.depth_ > kMaxNesting)
        parser.fail(token, "template nested more than 200 levels deep");
    }
    ~DepthGuard() { --parser.depth_; }
  };

  // ---- statements -----------------------------------------------------------------------

  // Parses until a block tag whose keyword is in `end_keywords` (left unconsumed, after its
  // `{%`) or the end of the template.
  Body parse_body(std::initializer_list<std::string_view> end_keywords) {
    Body body;
    while (current().type != TokenType::End) {
      const Token& token = current();
      if (token.type == TokenType::Text) {
        auto stmt = make_stmt(Stmt::Kind::Text, token);
        stmt->text = token.text;
        body.push_back(std::move(stmt));
        advance();
      } else if (token.type == TokenType::VariableBegin) {
        advance();
        auto stmt = make_stmt(Stmt::Kind::Output, token);
        stmt->expr = parse_tuple(true);
        if (current().type != TokenType::VariableEnd)
          fail(current(), "expected '}}' to end the expression, found " + describe(current()));
        advance();
        body.push_back(std::move(stmt));
      } else if (token.type == TokenType::BlockBegin) {
        const Token& keyword = peek();
        if (keyword.type != TokenType::Name) fail(keyword, "expected a statement name after '{%'");
        if (std::find(end_keywords.begin(), end_keywords.end(), keyword.text) !=
            end_keywords.end()) {
          advance();
          return body;
        }
        advance();
        if (auto stmt = parse_statement()) body.push_back(std::move(stmt));
      } else {
        fail(token, "unexpected " + describe(token));
      }
    }
    return body;
  }

  std::unique_ptr<Stmt> make_stmt(Stmt::Kind kind, const Token& token) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->position = token.position;
    return stmt;
  }

  // Parses the body of a block up to one of `end_keywords`; fails at the end of the template.
  Body parse_block_body(const Token& opener, std::initializer_list<std::string_view> end_keywords) {
    DepthGuard guard(*this, opener);
    Body body = parse_body(end_keywords);
    if (current().type == TokenType::End)
      fail(opener, "unclosed '" + opener.text + "' block: expected '{% " +
                       std::string(*end_keywords.begin()) + " %}' before the end of the template");
    return body;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token keyword = advance();
    const std::string& name = keyword.text;
    if (name == "if") return parse_if(keyword);
    if (name == "for") return parse_for(keyword);
    if (name == "set") return parse_set(keyword);
    if (name == "macro") return parse_macro(keyword);
    if (name == "call") return parse_call_block(keyword);
    if (name == "filter") return parse_filter_block(keyword);
    if (name == "with") return parse_with(keyword);
    if (name == "generation") return parse_generation(keyword);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail(keyword, "'" + name + "' outside of a for loop");
      expect_block_end(name);
      return make_stmt(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, keyword);
    }
    static const char* const kUnsupported[] = {"include",   "extends", "block",      "import",
                                               "from",      "do",      "autoescape", "trans",
                                               "pluralize", "print"};
    for (const char* unsupported : kUnsupported)
      if (name == unsupported) fail(keyword, "unsupported statement '" + name + "'");
    if (name.rfind("end", 0) == 0 || name == "elif" || name == "else")
      fail(keyword, "unexpected '" + name + "': no open block it could belong to");
    fail(keyword, "unknown statement '" + name + "'");
  }

  std::unique_ptr<Stmt> parse_if(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::If, keyword);
    ExprPtr condition = parse_expression(true);
    expect_block_end("if");
    while (true) {
      Body body = parse_block_body(keyword, {"endif", "elif", "else"});
      stmt->branches.emplace_back(std::move(condition), std::move(body));
      const Token& end = advance();
      if (end.text == "elif") {
        condition = parse_expression(true);
        expect_block_end("elif");
        continue;
      }
      if (end.text == "else") {
        expect_block_end("else");
        stmt->else_body = parse_block_body(keyword, {"endif"});
        advance();
      }
      expect_block_end("endif");
      return stmt;
    }
  }

  std::vector<std::string> parse_targets(std::string_view context) {
    std::vector<std::string> targets;
    const bool parenthesized = skip_operator("(");
    do {
      targets.push_back(expect_name(context));
    } while (skip_operator(","));
    if (parenthesized) expect_operator(")", context);
    return targets;
  }

  std::unique_ptr<Stmt> parse_for(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::For, keyword);
    stmt->targets = parse_targets("as the loop variable");
    if (!skip_name("in"))
      fail(current(), "expected 'in' in the for statement, found " + describe(current()));
    stmt->expr = parse_tuple(false);  // no `a if b else c` here: `if` starts the loop filter
    if (skip_name("if")) stmt->condition = parse_expression(true);
    if (at_name("recursive")) fail(current(), "unsupported: recursive for loops");
    expect_block_end("for");
    ++loop_depth_;
    stmt->body = parse_block_body(keyword, {"endfor", "else"});
    --loop_depth_;
    if (advance().text == "else") {
      expect_block_end("else");
      stmt->else_body = parse_block_body(keyword, {"endfor"});
      advance();
    }
    expect_block_end("endfor");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_set(const Token& keyword) {
    const Token& first = current();
    if (first.type == TokenType::Name && peek().type == TokenType::Operator && peek().text == ".") {
      auto stmt = make_stmt(Stmt::Kind::Set, keyword);
      stmt->targets.push_back(advance().text);
      advance();
      stmt->text = expect_name("after '.' in the set target");
      expect_operator("=", "in the set statement");
      stmt->expr = parse_tuple(true);
      expect_block_end("set");
      return stmt;
    }
    std::vector<std::string> targets = parse_targets("as the set target");
    if (skip_operator("=")) {
      auto stmt = make_stmt(Stmt::Kind::Set, keyword);
      stmt->targets = std::move(targets);
      stmt->expr = parse_tuple(true);
      expect_block_end("set");
      return stmt;
    }
    if (targets.size() != 1) fail(keyword, "a block set takes exactly one name");
    auto stmt = make_stmt(Stmt::Kind::SetBlock, keyword);
    stmt->targets = std::move(targets);
    while (skip_operator("|")) stmt->filters.push_back(parse_filter(nullptr));
    expect_block_end("set");
    stmt->body = parse_block_body(keyword, {"endset"});
    advance();
    expect_block_end("endset");
    return stmt;
  }

  std::vector<MacroParam> parse_params(std::string_view context) {
    std::vector<MacroParam> params;
    expect_operator("(", context);
    while (!at_operator(")")) {
      if (!params.empty()) expect_operator(",", "between parameters");
      if (at_operator(")")) break;
      MacroParam param;
      param.name = expect_name("as a parameter");
      if (skip_operator("="))
        param.default_value = parse_expression(true);
      else if (!params.empty() && params.back().default_value)
        fail(current(),
             "parameter '" + param.name + "' without a default follows one with a default");
      params.push_back(std::move(param));
    }
    advance();
    return params;
  }

  std::unique_ptr<Stmt> parse_macro(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::Macro, keyword);
    stmt->text = expect_name("as the macro name");
    stmt->params = parse_params("after the macro name");
    expect_block_end("macro");
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot reach a loop outside the macro
    stmt->body = parse_block_body(keyword, {"endmacro"});
    loop_depth_ = saved_loop_depth;
    advance();
    if (current().type == TokenType::Name) advance();  // {% endmacro name %}
    expect_block_end("endmacro");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_call_block(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::CallBlock, keyword);
    if (at_operator("(")) stmt->params = parse_params("after 'call'");
    stmt->expr = parse_expression(true);
    if (stmt->expr->kind != Expr::Kind::Call)
      fail(keyword, "'call' needs a macro call, like {% call m() %}");
    expect_block_end("call");
    stmt->body = parse_block_body(keyword, {"endcall"});
    advance();
    expect_block_end("endcall");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_filter_block(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::FilterBlock, keyword);
    do {
      stmt->filters.push_back(parse_filter(nullptr));
    } while (skip_operator("|"));
    expect_block_end("filter");
    stmt->body = parse_block_body(keyword, {"endfilter"});
    advance();
    expect_block_end("endfilter");
    return stmt;
  }

  std::unique_ptr<Stmt> parse_with(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::With, keyword);
    while (current().type != TokenType::BlockEnd) {
      if (!stmt->targets.empty()) expect_operator(",", "between with assignments");
      stmt->targets.push_back(expect_name("in the with statement"));
      expect_operator("=", "in the with statement");
      stmt->with_values.push_back(parse_expression(true));
    }
    expect_block_end("with");
    stmt->body = parse_block_body(keyword, {"endwith"});
    advance();
    expect_block_end("endwith");
    return stmt;
  }

  // transformers' {% generation %} marks assistant text for return_assistant_tokens_mask; the
  // rendered text is the body as is.
  std::unique_ptr<Stmt> parse_generation(const Token& keyword) {
    auto stmt = make_stmt(Stmt::Kind::With, keyword);
    expect_block_end("generation");
    stmt->body = parse_block_body(keyword, {"endgeneration"});
    advance();
    expect_block_end("endgeneration");
    return stmt;
  }

  // ---- expressions ----------------------------------------------------------------------

  ExprPtr make_expr(Expr::Kind kind, const Token& token) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->position = token.position;
    return expr;
  }

  // `a, b` without parentheses is a tuple where Jinja allows it: {{ }}, set values, for iterables.
  ExprPtr parse_tuple(bool with_condition) {
    const Token& start = current();
    ExprPtr first = parse_expression(with_condition);
    if (!at_operator(",")) return first;
    auto tuple = make_expr(Expr::Kind::Tuple, start);
    tuple->operands.push_back(std::move(first));
    while (skip_operator(",")) {
      if (current().type == TokenType::BlockEnd || current().type == TokenType::VariableEnd ||
          at_name("if"))
        break;
      tuple->operands.push_back(parse_expression(with_condition));
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_condition) {
    DepthGuard guard(*this, current());
    ExprPtr expr = parse_or();
    if (!with_condition) return expr;
    while (at_name("if")) {
      const Token& token = advance();
      auto conditional = make_expr(Expr::Kind::Conditional, token);
      conditional->operands.push_back(parse_or());
      conditional->operands.push_back(std::move(expr));
      conditional->operands.push_back(skip_name("else") ? parse_expression(true) : nullptr);
      expr = std::move(conditional);
    }
    return expr;
  }

  ExprPtr binary(const Token& token, std::string op, ExprPtr left, ExprPtr right) {
    auto expr = make_expr(Expr::Kind::Binary, token);
    expr->name = std::move(op);
    expr->operands.push_back(std::move(left));
    expr->operands.push_back(std::move(right));
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const Token& token = advance();
      left = binary(token, "or", std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const Token& token = advance();
      left = binary(token, "and", std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard guard(*this, current());
      const Token& token = advance();
      auto expr = make_expr(Expr::Kind::Not, token);
      expr->operands.push_back(parse_not());
      return expr;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = current();
    ExprPtr first = parse_math1();
    ExprPtr compare;
    while (true) {
      std::string op;
      const Token& token = current();
      if (token.type == TokenType::Operator &&
          (token.text == "==" || token.text == "!=" || token.text == "<" || token.text == "<=" ||
           token.text == ">" || token.text == ">=")) {
        op = token.text;
        advance();
      } else if (at_name("in")) {
        op = "in";
        advance();
      } else if (at_name("not") && peek().type == TokenType::Name && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!compare) {
        compare = make_expr(Expr::Kind::Compare, start);
        compare->operands.push_back(std::move(first));
      }
      compare->compare_ops.push_back(op);
      compare->operands.push_back(parse_math1());
    }
    return compare ? std::move(compare) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_operator("+") || at_operator("-")) {
      const Token& token = advance();
      left = binary(token, token.text, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (at_operator("~")) {
      const Token& token = advance();
      left = binary(token, "~", std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_operator("*") || at_operator("/") || at_operator("//") || at_operator("%")) {
      const Token& token = advance();
      left = binary(token, token.text, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_operator("**")) {
      const Token& token = advance();
      left = binary(token, "**", std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this, current());
    ExprPtr expr;
    if (at_operator("-") || at_operator("+")) {
      const Token& token = advance();
      expr = make_expr(token.text == "-" ? Expr::Kind::Negate : Expr::Kind::Plus, token);
      expr->operands.push_back(parse_unary(false));
    } else {
      expr = parse_primary();
    }
    expr = parse_postfix(std::move(expr));
    if (with_filter) expr = parse_filters_and_tests(std::move(expr));
    return expr;
  }

  ExprPtr parse_primary() {
    const Token& token = current();
    switch (token.type) {
      case TokenType::Name: {
        advance();
        if (token.text == "true" || token.text == "True" || token.text == "false" ||
            token.text == "False") {
          auto expr = make_expr(Expr::Kind::Literal, token);
          expr->literal = Value::boolean(token.text[0] == 't' || token.text[0] == 'T');
          return expr;
        }
        if (token.text == "none" || token.text == "None") {
          auto expr = make_expr(Expr::Kind::Literal, token);
          expr->literal = Value::none();
          return expr;
        }
        auto expr = make_expr(Expr::Kind::Name, token);
        expr->name = token.text;
        return expr;
      }
      case TokenType::String: {
        std::string text;
        while (current().type == TokenType::String) text += advance().text;  // 'a' 'b' == 'ab'
        auto expr = make_expr(Expr::Kind::Literal, token);
        expr->literal = Value::string(std::move(text));
        return expr;
      }
      case TokenType::Integer:
      case TokenType::Float: {
        advance();
        auto expr = make_expr(Expr::Kind::Literal, token);
        expr->literal = token.type == TokenType::Integer ? Value::integer(token.integer)
                                                         : Value::floating(token.floating);
        return expr;
      }
      case TokenType::Operator:
        if (token.text == "(") return parse_parenthesized();
        if (token.text == "[") return parse_list();
        if (token.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail(token, "expected an expression, found " + describe(token));
  }

  ExprPtr parse_parenthesized() {
    const Token& open = advance();
    if (skip_operator(")")) return make_expr(Expr::Kind::Tuple, open);
    ExprPtr first = parse_expression(true);
    if (skip_operator(")")) return first;
    auto tuple = make_expr(Expr::Kind::Tuple, open);
    tuple->operands.push_back(std::move(first));
    while (skip_operator(",")) {
      if (at_operator(")")) break;
      tuple->operands.push_back(parse_expression(true));
    }
    expect_operator(")", "to close '('");
    return tuple;
  }

  ExprPtr parse_list() {
    auto list = make_expr(Expr::Kind::List, advance());
    while (!at_operator("]")) {
      if (!list->operands.empty()) expect_operator(",", "between list items");
      if (at_operator("]")) break;
      list->operands.push_back(parse_expression(true));
    }
    advance();
    return list;
  }

  ExprPtr parse_dict() {
    auto dict = make_expr(Expr::Kind::Dict, advance());
    while (!at_operator("}")) {
      if (!dict->operands.empty()) expect_operator(",", "between dict items");
      if (at_operator("}")) break;
      dict->operands.push_back(parse_expression(true));
      expect_operator(":", "after a dict key");
      dict->operands.push_back(parse_expression(true));
    }
    advance();
    return dict;
  }

  ExprPtr parse_postfix(ExprPtr expr) {
    while (true) {
      const Token& token = current();
      if (at_operator(".")) {
        advance();
        if (current().type == TokenType::Integer) {  // items.0 is items[0]
          auto index = make_expr(Expr::Kind::Literal, current());
          index->literal = Value::integer(advance().integer);
          auto subscript = make_expr(Expr::Kind::Subscript, token);
          subscript->operands.push_back(std::move(expr));
          subscript->operands.push_back(std::move(index));
          expr = std::move(subscript);
          continue;
        }
        auto attribute = make_expr(Expr::Kind::Attribute, token);
        attribute->name = expect_name("after '.'");
        attribute->operands.push_back(std::move(expr));
        expr = std::move(attribute);
      } else if (at_operator("[")) {
        advance();
        expr = parse_subscript(token, std::move(expr));
      } else if (at_operator("(")) {
        auto call = make_expr(Expr::Kind::Call, token);
        call->operands.push_back(std::move(expr));
        parse_call_args(*call);
        expr = std::move(call);
      } else {
        return expr;
      }
    }
  }

  ExprPtr parse_subscript(const Token& token, ExprPtr object) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int part = 0; part < 3; ++part) {
      if (!at_operator(":") && !at_operator("]")) parts[part] = parse_expression(true);
      if (part < 2 && skip_operator(":")) {
        is_slice = true;
        continue;
      }
      break;
    }
    expect_operator("]", "to close the subscript");
    if (!is_slice) {
      if (!parts[0]) fail(token, "empty subscript '[]'");
      auto subscript = make_expr(Expr::Kind::Subscript, token);
      subscript->operands.push_back(std::move(object));
      subscript->operands.push_back(std::move(parts[0]));
      return subscript;
    }
    auto slice = make_expr(Expr::Kind::Slice, token);
    slice->operands.push_back(std::move(object));
    for (auto& part : parts) slice->operands.push_back(std::move(part));
    return slice;
  }

  void parse_call_args(Expr& call) {
    expect_operator("(", "to start the arguments");
    bool first = true;
    while (!at_operator(")")) {
      if (!first) expect_operator(",", "between arguments");
      first = false;
      if (at_operator(")")) break;
      if (at_operator("*") || at_operator("**"))
        fail(current(), "unsupported: *args and **kwargs in calls");
      if (current().type == TokenType::Name && peek().type == TokenType::Operator &&
          peek().text == "=") {
        std::string name = advance().text;
        advance();
        call.keyword_args.emplace_back(std::move(name), parse_expression(true));
      } else {
        if (!call.keyword_args.empty())
          fail(current(), "positional argument after a keyword argument");
        call.operands.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_filter(ExprPtr input) {
    const Token& token = current();
    auto filter = make_expr(Expr::Kind::Filter, token);
    filter->name = expect_name("as the filter name after '|'");
    while (at_operator(".") && peek().type == TokenType::Name) {
      advance();
      filter->name += "." + advance().text;
    }
    filter->operands.push_back(std::move(input));
    if (at_operator("(")) parse_call_args(*filter);
    return filter;
  }

  ExprPtr parse_filters_and_tests(ExprPtr expr) {
    while (true) {
      if (skip_operator("|")) {
        expr = parse_filter(std::move(expr));
      } else if (at_name("is")) {
        const Token& token = advance();
        auto test = make_expr(Expr::Kind::Test, token);
        test->negated = skip_name("not");
        test->name = expect_name("as the test name after 'is'");
        test->operands.push_back(std::move(expr));
        if (at_operator("(")) {
          parse_call_args(*test);
        } else if ((current().type == TokenType::Name || current().type == TokenType::String ||
                    current().type == TokenType::Integer || current().type == TokenType::Float ||
                    at_operator("[") || at_operator("{")) &&
                   !at_name("else") && !at_name("or") && !at_name("and") && !at_name("is") &&
                   !at_name("if") && !at_name("in") && !at_name("not")) {
          test->operands.push_back(parse_postfix(parse_primary()));  // `is divisibleby 3`
        }
        expr = std::move(test);
      } else {
        return expr;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t index_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse_template(std::string_view source) { return Parser(tokenize(source)).parse_all(); }

}  // namespace dsv3::jinja
