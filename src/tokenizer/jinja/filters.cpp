#include "tokenizer/jinja/filters.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "tokenizer/jinja/access.h"
#include "tokenizer/jinja/json_convert.h"
#include "tokenizer/jinja/methods.h"
#include "tokenizer/jinja/predicates.h"
#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

constexpr std::string_view kFilters[] = {
    "abs",     "capitalize", "count",     "d",      "default", "dictsort",   "e",      "escape",
    "first",   "float",      "from_json", "indent", "int",     "items",      "join",   "last",
    "length",  "list",       "lower",     "map",    "max",     "min",        "reject", "rejectattr",
    "replace", "reverse",    "round",     "safe",   "select",  "selectattr", "sort",   "string",
    "sum",     "title",      "tojson",    "trim",   "unique",  "upper"};

std::string input_string(const Value& input) { return input.str(); }

int64_t length_of(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::String:
      return static_cast<int64_t>(count_code_points(value.as_string()));
    case Value::Kind::List:
    case Value::Kind::Tuple:
      return static_cast<int64_t>(value.items().size());
    case Value::Kind::Dict:
      return static_cast<int64_t>(value.entries().entries.size());
    case Value::Kind::Undefined:
      return 0;
    default:
      throw EvalError(std::string("object of type '") + value.type_name() + "' has no len()");
  }
}

bool bool_arg(const CallArgs& args, size_t position, std::string_view name) {
  return arg_or(args, position, name, Value::boolean(false)).truthy();
}

// The key a sort/unique/min/max compares: an attribute path, lower-cased strings by default.
Value sort_key(const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = attribute.is_string() ? get_attribute_path(item, attribute.as_string())
              : attribute.is_int()  ? get_item(item, attribute)
                                    : item;
  if (!case_sensitive && key.is_string()) return Value::string(lower(key.as_string()));
  return key;
}

std::vector<Value> sorted(std::vector<Value> items, const Value& attribute, bool case_sensitive,
                          bool reverse) {
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const int order = compare_values(sort_key(a, attribute, case_sensitive),
                                     sort_key(b, attribute, case_sensitive));
    return reverse ? order > 0 : order < 0;
  });
  return items;
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
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
        out += c;
    }
  }
  return out;
}

// Python's int(text, base) / float(text) for the int and float filters.
std::optional<int64_t> parse_int(const std::string& text, int base) {
  std::string digits = strip_python(text, true, true);
  digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return value;
}

std::optional<double> parse_float(const std::string& text) {
  std::string digits = strip_python(text, true, true);
  if (digits.empty() || digits.find_first_of("xXpP") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(digits.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return value;
}

Value filter_tojson(const Value& input, const CallArgs& args) {
  check_arg_names(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = bool_arg(args, 0, "ensure_ascii");
  const Value indent = arg_or(args, 1, "indent", Value::none());
  if (indent.is_int())
    style.indent = std::string(std::max<int64_t>(0, std::min<int64_t>(indent.as_int(), 64)), ' ');
  else if (indent.is_string())
    style.indent = indent.as_string();
  else if (!indent.is_none())
    throw EvalError("tojson: indent must be an int or a string");
  if (style.indent) style.item_separator.assign(1, ',');  // json.dumps: "," once indenting
  const Value separators = arg_or(args, 2, "separators", Value::none());
  if (separators.is_sequence()) {
    if (separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string())
      throw EvalError("tojson: separators must be two strings");
    style.item_separator = separators.items()[0].as_string();
    style.key_separator = separators.items()[1].as_string();
  } else if (!separators.is_none()) {
    throw EvalError("tojson: separators must be a tuple of two strings");
  }
  style.sort_keys = bool_arg(args, 3, "sort_keys");
  return Value::string(to_json(input, style));
}

Value filter_indent(const Value& input, const CallArgs& args) {
  check_arg_names(args, "indent", {"width", "first", "blank"});
  const Value width = arg_or(args, 0, "width", Value::integer(4));
  const std::string indentation =
      width.is_string()
          ? width.as_string()
          : std::string(std::clamp<int64_t>(width.is_int() ? width.as_int() : 4, 0, 256), ' ');
  const bool first = bool_arg(args, 1, "first");
  const bool blank = bool_arg(args, 2, "blank");
  // Jinja appends a newline first, so a trailing newline yields a last empty line.
  const Value split = call_method(Value::string(input_string(input) + "\n"), "splitlines", {});
  std::vector<std::string> lines;
  for (const Value& line : split.items()) lines.push_back(line.as_string());
  std::string out = lines.empty() ? "" : lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += '\n';
    if (blank || !lines[i].empty()) out += indentation;
    out += lines[i];
  }
  return Value::string(first ? indentation + out : out);
}

// `select`/`reject` (attribute empty) and `selectattr`/`rejectattr`.
Value filter_select(const Value& input, const CallArgs& args, bool keep_matching,
                    bool by_attribute) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string())
      throw EvalError("selectattr/rejectattr need an attribute name");
    attribute = args.positional[next++].as_string();
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string())
      throw EvalError("select/reject: the test name must be a string");
    test = args.positional[next++].as_string();
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + next, args.positional.end());
  test_args.keyword = args.keyword;
  std::vector<Value> kept;
  for (const Value& item : iterate(input)) {
    const Value subject = by_attribute ? get_attribute_path(item, attribute) : item;
    const bool matches = test.empty() ? subject.truthy() : apply_test(test, subject, test_args);
    if (matches == keep_matching) kept.push_back(item);
  }
  return Value::list(std::move(kept));
}

Value filter_map(const Value& input, const CallArgs& args) {
  std::vector<Value> mapped;
  const Value* attribute = nullptr;
  for (const auto& [key, value] : args.keyword)
    if (key == "attribute") attribute = &value;
  if (attribute != nullptr) {
    const Value fallback = arg_or(CallArgs{{}, args.keyword}, 99, "default", Value());
    for (const Value& item : iterate(input)) {
      Value result = attribute->is_int() ? get_item(item, *attribute)
                                         : get_attribute_path(item, attribute->str());
      mapped.push_back(result.is_undefined() && !fallback.is_undefined() ? fallback : result);
    }
    return Value::list(std::move(mapped));
  }
  if (args.positional.empty() || !args.positional[0].is_string())
    throw EvalError("map needs a filter name or attribute=...");
  const std::string filter = args.positional[0].as_string();
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : iterate(input))
    mapped.push_back(apply_filter(filter, item, filter_args));
  return Value::list(std::move(mapped));
}

Value filter_round(const Value& input, const CallArgs& args) {
  check_arg_names(args, "round", {"precision", "method"});
  if (!input.is_number())
    throw EvalError(std::string("round: expected a number, got ") + input.type_name());
  const int64_t precision =
      std::clamp<int64_t>(arg_or(args, 0, "precision", Value::integer(0)).as_int(), 0, 15);
  const std::string method = arg_or(args, 1, "method", Value::string("common")).str();
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = input.as_number() * scale;
  double rounded;
  if (method == "common")
    rounded = std::nearbyint(scaled);  // Python's round(): half to even
  else if (method == "ceil")
    rounded = std::ceil(scaled);
  else if (method == "floor")
    rounded = std::floor(scaled);
  else
    throw EvalError("round: method must be 'common', 'ceil' or 'floor'");
  return Value::floating(rounded / scale);
}

}  // namespace

bool has_filter(const std::string& name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

Value apply_filter(const std::string& name, const Value& input, const CallArgs& args) {
  if (name == "default" || name == "d") {
    check_arg_names(args, name, {"default_value", "boolean"});
    const bool use_default = bool_arg(args, 1, "boolean") ? !input.truthy() : input.is_undefined();
    return use_default ? arg_or(args, 0, "default_value", Value::string("")) : input;
  }
  if (name == "tojson") return filter_tojson(input, args);
  if (name == "from_json") {
    check_arg_names(args, name, {});
    if (!input.is_string())
      throw EvalError(std::string("from_json: expected a string, got ") + input.type_name());
    return parse_json_text(input.as_string());
  }
  if (name == "length" || name == "count")
    return check_arg_names(args, name, {}), Value::integer(length_of(input));
  if (name == "string") return check_arg_names(args, name, {}), Value::string(input_string(input));
  if (name == "safe") return check_arg_names(args, name, {}), input;
  if (name == "trim") {
    check_arg_names(args, name, {"chars"});
    const Value chars = arg_or(args, 0, "chars", Value::none());
    return Value::string(chars.is_string()
                             ? strip_chars(input_string(input), chars.as_string(), true, true)
                             : strip_python(input_string(input), true, true));
  }
  if (name == "upper" || name == "lower" || name == "capitalize")
    return call_method(Value::string(input_string(input)), name, args);
  if (name == "title") {
    // Jinja capitalises after runs of whitespace, '-', '(', '{', '[' and '<'.
    check_arg_names(args, name, {});
    std::string out;
    bool at_word_start = true;
    for (char32_t c : decode_utf8(input_string(input))) {
      const bool separator =
          is_python_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      append_utf8(out, at_word_start ? to_upper(c) : to_lower(c));
      at_word_start = separator;
    }
    return Value::string(out);
  }
  if (name == "replace") {
    check_arg_names(args, name, {"old", "new", "count"});
    return call_method(Value::string(input_string(input)), "replace", args);
  }
  if (name == "escape" || name == "e")
    return check_arg_names(args, name, {}), Value::string(html_escape(input_string(input)));
  if (name == "indent") return filter_indent(input, args);
  if (name == "join") {
    check_arg_names(args, name, {"d", "attribute"});
    const std::string separator = arg_or(args, 0, "d", Value::string("")).str();
    const Value attribute = arg_or(args, 1, "attribute", Value::none());
    std::string out;
    bool first = true;
    for (const Value& item : iterate(input)) {
      if (!first) out += separator;
      first = false;
      out += (attribute.is_none() ? item : get_attribute_path(item, attribute.str())).str();
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    check_arg_names(args, name, {});
    const std::vector<Value> items = iterate(input);
    if (items.empty()) return Value::undefined("no " + name + " item, the sequence is empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return check_arg_names(args, name, {}), Value::list(iterate(input));
  if (name == "items") {
    check_arg_names(args, name, {});
    if (input.is_undefined()) return Value::list();
    if (!input.is_mapping()) throw EvalError("items: can only get item pairs from a mapping");
    return call_method(input, "items", {});
  }
  if (name == "reverse") {
    check_arg_names(args, name, {});
    if (input.is_string()) return get_slice(input, std::nullopt, std::nullopt, -1);
    std::vector<Value> items = iterate(input);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "sort") {
    check_arg_names(args, name, {"reverse", "case_sensitive", "attribute"});
    return Value::list(sorted(iterate(input), arg_or(args, 2, "attribute", Value::none()),
                              bool_arg(args, 1, "case_sensitive"), bool_arg(args, 0, "reverse")));
  }
  if (name == "dictsort") {
    check_arg_names(args, name, {"case_sensitive", "by", "reverse"});
    if (!input.is_mapping()) throw EvalError("dictsort: expected a mapping");
    const std::string by = arg_or(args, 1, "by", Value::string("key")).str();
    if (by != "key" && by != "value") throw EvalError("dictsort: 'by' must be 'key' or 'value'");
    return Value::list(sorted(call_method(input, "items", {}).items(),
                              Value::integer(by == "key" ? 0 : 1),
                              bool_arg(args, 0, "case_sensitive"), bool_arg(args, 2, "reverse")));
  }
  if (name == "unique" || name == "min" || name == "max") {
    check_arg_names(args, name, {"case_sensitive", "attribute"});
    const bool case_sensitive = bool_arg(args, 0, "case_sensitive");
    const Value attribute = arg_or(args, 1, "attribute", Value::none());
    std::vector<Value> items = iterate(input);
    if (name == "unique") {
      std::vector<Value> kept;
      std::vector<Value> seen_keys;
      for (const Value& item : items) {
        const Value key = sort_key(item, attribute, case_sensitive);
        if (std::any_of(seen_keys.begin(), seen_keys.end(),
                        [&](const Value& seen) { return values_equal(seen, key); }))
          continue;
        seen_keys.push_back(key);
        kept.push_back(item);
      }
      return Value::list(std::move(kept));
    }
    if (items.empty()) return Value::undefined("no " + name + " item, the sequence is empty");
    const std::vector<Value> ordered = sorted(items, attribute, case_sensitive, false);
    return name == "min" ? ordered.front() : ordered.back();
  }
  if (name == "sum") {
    check_arg_names(args, name, {"attribute", "start"});
    const Value attribute = arg_or(args, 0, "attribute", Value::none());
    Value total = arg_or(args, 1, "start", Value::integer(0));
    for (const Value& item : iterate(input)) {
      const Value term = attribute.is_none() ? item : get_attribute_path(item, attribute.str());
      if (!term.is_number() || !total.is_number()) throw EvalError("sum: items must be numbers");
      if (term.is_int() && total.is_int()) {
        int64_t result;
        if (__builtin_add_overflow(total.as_int(), term.as_int(), &result))
          throw EvalError("sum: integer overflow");
        total = Value::integer(result);
      } else {
        total = Value::floating(total.as_number() + term.as_number());
      }
    }
    return total;
  }
  if (name == "select" || name == "reject")
    return filter_select(input, args, name == "select", false);
  if (name == "selectattr" || name == "rejectattr")
    return filter_select(input, args, name == "selectattr", true);
  if (name == "map") return filter_map(input, args);
  if (name == "abs") {
    check_arg_names(args, name, {});
    if (input.kind() == Value::Kind::Float) return Value::floating(std::fabs(input.as_number()));
    if (!input.is_int())
      throw EvalError(std::string("abs: bad operand type '") + input.type_name() + "'");
    if (input.as_int() == INT64_MIN) throw EvalError("abs: integer overflow");
    return Value::integer(std::llabs(input.as_int()));
  }
  if (name == "round") return filter_round(input, args);
  if (name == "int") {
    check_arg_names(args, name, {"default", "base"});
    const Value fallback = arg_or(args, 0, "default", Value::integer(0));
    const int64_t base = arg_or(args, 1, "base", Value::integer(10)).as_int();
    if (input.is_int()) return Value::integer(input.as_int());
    if (input.kind() == Value::Kind::Float) {
      const double number = input.as_number();
      if (!std::isfinite(number) || std::fabs(number) >= 9.2e18) return fallback;
      return Value::integer(static_cast<int64_t>(number));
    }
    if (input.is_string()) {
      if (auto parsed = parse_int(input.as_string(), static_cast<int>(base)))
        return Value::integer(*parsed);
      if (auto parsed = parse_float(input.as_string());
          parsed && std::isfinite(*parsed) && std::fabs(*parsed) < 9.2e18)
        return Value::integer(static_cast<int64_t>(*parsed));
    }
    return fallback;
  }
  if (name == "float") {
    check_arg_names(args, name, {"default"});
    if (input.is_number()) return Value::floating(input.as_number());
    if (input.is_string())
      if (auto parsed = parse_float(input.as_string())) return Value::floating(*parsed);
    return arg_or(args, 0, "default", Value::floating(0.0));
  }
  throw EvalError("unknown filter '" + name + "'");
}

}  // namespace dsv3::jinja
