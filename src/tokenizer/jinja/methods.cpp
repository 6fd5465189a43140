#include "tokenizer/jinja/methods.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "tokenizer/jinja/access.h"
#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

constexpr std::string_view kStringMethods[] = {
    "split",   "rsplit",  "strip",   "lstrip",       "rstrip",       "startswith", "endswith",
    "upper",   "lower",   "title",   "capitalize",   "replace",      "find",       "rfind",
    "count",   "join",    "format",  "splitlines",   "isdigit",      "isalpha",    "isalnum",
    "isspace", "isupper", "islower", "removeprefix", "removesuffix", "swapcase"};
constexpr std::string_view kListMethods[] = {"append", "pop",   "extend", "insert",
                                             "index",  "count", "copy",   "reverse"};
constexpr std::string_view kTupleMethods[] = {"index", "count"};
constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values", "copy"};

template <size_t N>
bool listed(const std::string_view (&names)[N], const std::string& name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

const std::string& string_arg(const CallArgs& args, size_t position, std::string_view name,
                              std::string_view method) {
  const Value* value = find_arg(args, position, name);
  if (value == nullptr)
    throw EvalError(std::string(method) + "() missing argument '" + std::string(name) + "'");
  if (!value->is_string())
    throw EvalError(std::string(method) + "() argument '" + std::string(name) +
                    "' must be str, not " + value->type_name());
  return value->as_string();
}

int64_t int_arg(const CallArgs& args, size_t position, std::string_view name, int64_t fallback,
                std::string_view method) {
  const Value* value = find_arg(args, position, name);
  if (value == nullptr || value->is_none()) return fallback;
  if (!value->is_int())
    throw EvalError(std::string(method) + "() argument '" + std::string(name) +
                    "' must be int, not " + value->type_name());
  return value->as_int();
}

// True if `text` starts (or ends) with `affix`, a str or a tuple of str.
bool has_affix(const std::string& text, const Value& affix, bool at_start,
               std::string_view method) {
  auto check = [&](const Value& candidate) {
    if (!candidate.is_string())
      throw EvalError(std::string(method) + "() argument must be str or a tuple of str, not " +
                      candidate.type_name());
    const std::string& part = candidate.as_string();
    if (part.size() > text.size()) return false;
    return at_start ? text.compare(0, part.size(), part) == 0
                    : text.compare(text.size() - part.size(), part.size(), part) == 0;
  };
  if (affix.is_sequence()) {
    for (const Value& candidate : affix.items())
      if (check(candidate)) return true;
    return false;
  }
  return check(affix);
}

std::string replace_all(const std::string& text, const std::string& old_text,
                        const std::string& new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts the replacement before every character and at the end.
    const std::vector<char32_t> code_points = decode_utf8(text);
    int64_t done = 0;
    for (char32_t c : code_points) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t from = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old_text, from);
    if (found == std::string::npos) break;
    out.append(text, from, found - from);
    out += new_text;
    from = found + old_text.size();
    ++done;
  }
  out.append(text, from, std::string::npos);
  return out;
}

int64_t code_point_index(const std::string& text, size_t byte_offset) {
  return static_cast<int64_t>(count_code_points(std::string_view(text).substr(0, byte_offset)));
}

bool is_cased(char32_t c) { return to_upper(c) != c || to_lower(c) != c; }

// Python str.format with automatic ({}), numbered ({0}) and named ({name}) fields.
std::string format_string(const std::string& pattern, const CallArgs& args) {
  std::string out;
  size_t next_auto = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '}') {
      if (i + 1 < pattern.size() && pattern[i + 1] == '}')
        ++i;
      else
        throw EvalError("format(): single '}' in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < pattern.size() && pattern[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = pattern.find('}', i);
    if (close == std::string::npos) throw EvalError("format(): unclosed '{' in format string");
    const std::string field = pattern.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos)
      throw EvalError(
          "format(): format specs, conversions and attribute fields are not supported: {" + field +
          "}");
    const Value* value = nullptr;
    if (field.empty() || field.find_first_not_of("0123456789") == std::string::npos) {
      const size_t position = field.empty() ? next_auto++ : std::stoul(field.substr(0, 9));
      if (position >= args.positional.size())
        throw EvalError("format(): replacement index out of range");
      value = &args.positional[position];
    } else {
      for (const auto& [key, candidate] : args.keyword)
        if (key == field) value = &candidate;
      if (value == nullptr) throw EvalError("format(): no argument named '" + field + "'");
    }
    out += value->str();
    i = close;
  }
  return out;
}

Value string_method(const std::string& text, const std::string& name, const CallArgs& args) {
  auto no_args = [&]() { check_arg_names(args, name, {}); };
  if (name == "split" || name == "rsplit") {
    check_arg_names(args, name, {"sep", "maxsplit"});
    const Value separator = arg_or(args, 0, "sep", Value::none());
    const int64_t max_split = int_arg(args, 1, "maxsplit", -1, name);
    if (name == "rsplit" && max_split >= 0) {
      // Only rsplit with a limit differs from split: split from the right.
      std::vector<Value> all = split_string(text, separator, -1);
      if (static_cast<int64_t>(all.size()) <= max_split + 1) return Value::list(std::move(all));
      const size_t keep = all.size() - max_split;
      const std::string joiner = separator.is_string() ? separator.as_string() : " ";
      if (!separator.is_string())
        throw EvalError("rsplit() with maxsplit and no separator is not supported");
      std::string head;
      for (size_t i = 0; i < keep; ++i) head += (i ? joiner : "") + all[i].as_string();
      std::vector<Value> parts{Value::string(head)};
      parts.insert(parts.end(), all.begin() + keep, all.end());
      return Value::list(std::move(parts));
    }
    return Value::list(split_string(text, separator, max_split));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    check_arg_names(args, name, {"chars"});
    const Value chars = arg_or(args, 0, "chars", Value::none());
    const bool left = name != "rstrip";
    const bool right = name != "lstrip";
    if (chars.is_none()) return Value::string(strip_python(text, left, right));
    if (!chars.is_string()) throw EvalError(name + "() argument must be str or None");
    return Value::string(strip_chars(text, chars.as_string(), left, right));
  }
  if (name == "startswith" || name == "endswith") {
    check_arg_names(args, name, {"prefix"});
    const Value* affix = find_arg(args, 0, "prefix");
    if (affix == nullptr) throw EvalError(name + "() takes at least 1 argument");
    return Value::boolean(has_affix(text, *affix, name == "startswith", name));
  }
  if (name == "upper") return no_args(), Value::string(upper(text));
  if (name == "lower") return no_args(), Value::string(lower(text));
  if (name == "swapcase") {
    no_args();
    std::string out;
    for (char32_t c : decode_utf8(text))
      append_utf8(out, to_upper(c) != c ? to_upper(c) : to_lower(c));
    return Value::string(out);
  }
  if (name == "title") {
    no_args();
    std::string out;
    bool previous_cased = false;
    for (char32_t c : decode_utf8(text)) {
      append_utf8(out, previous_cased ? to_lower(c) : to_upper(c));
      previous_cased = is_cased(c);
    }
    return Value::string(out);
  }
  if (name == "capitalize") {
    no_args();
    std::string out;
    bool first = true;
    for (char32_t c : decode_utf8(text)) {
      append_utf8(out, first ? to_upper(c) : to_lower(c));
      first = false;
    }
    return Value::string(out);
  }
  if (name == "replace") {
    check_arg_names(args, name, {"old", "new", "count"});
    return Value::string(replace_all(text, string_arg(args, 0, "old", name),
                                     string_arg(args, 1, "new", name),
                                     int_arg(args, 2, "count", -1, name)));
  }
  if (name == "find" || name == "rfind") {
    check_arg_names(args, name, {"sub"});
    const std::string& needle = string_arg(args, 0, "sub", name);
    const size_t found = name == "find" ? text.find(needle) : text.rfind(needle);
    return Value::integer(found == std::string::npos ? -1 : code_point_index(text, found));
  }
  if (name == "count") {
    check_arg_names(args, name, {"sub"});
    const std::string& needle = string_arg(args, 0, "sub", name);
    if (needle.empty()) return Value::integer(static_cast<int64_t>(count_code_points(text)) + 1);
    int64_t count = 0;
    for (size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + needle.size()))
      ++count;
    return Value::integer(count);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    check_arg_names(args, name, {"affix"});
    const std::string& affix = string_arg(args, 0, "affix", name);
    if (!has_affix(text, Value::string(affix), name == "removeprefix", name))
      return Value::string(text);
    return Value::string(name == "removeprefix" ? text.substr(affix.size())
                                                : text.substr(0, text.size() - affix.size()));
  }
  if (name == "join") {
    check_arg_names(args, name, {"iterable"});
    const Value* iterable = find_arg(args, 0, "iterable");
    if (iterable == nullptr) throw EvalError("join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(*iterable)) {
      if (!item.is_string())
        throw EvalError(std::string("join(): expected str items, found ") + item.type_name());
      if (!first) out += text;
      first = false;
      out += item.as_string();
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(format_string(text, args));
  if (name == "splitlines") {
    no_args();
    std::vector<Value> lines;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '\n' && text[i] != '\r') continue;
      lines.push_back(Value::string(text.substr(start, i - start)));
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
    if (start < text.size()) lines.push_back(Value::string(text.substr(start)));
    return Value::list(std::move(lines));
  }
  // The is* predicates, over code points like Python (ASCII classes for digits and letters).
  no_args();
  const std::vector<char32_t> code_points = decode_utf8(text);
  if (code_points.empty()) return Value::boolean(false);
  auto all = [&](auto predicate) {
    return Value::boolean(std::all_of(code_points.begin(), code_points.end(), predicate));
  };
  if (name == "isdigit") return all([](char32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isalpha")
    return all([](char32_t c) {
      return c >= 0x80 ? is_cased(c) : std::isalpha(static_cast<int>(c)) != 0;
    });
  if (name == "isalnum")
    return all([](char32_t c) {
      return c >= 0x80 ? is_cased(c) : std::isalnum(static_cast<int>(c)) != 0;
    });
  if (name == "isspace") return all(is_python_space);
  const bool any_cased = std::any_of(code_points.begin(), code_points.end(), is_cased);
  if (name == "isupper") return Value::boolean(any_cased && upper(text) == text);
  if (name == "islower") return Value::boolean(any_cased && lower(text) == text);
  throw EvalError("str has no method '" + name + "'");
}

Value list_method(const Value& list, const std::string& name, const CallArgs& args) {
  auto& items = list.items();
  const bool is_tuple = list.kind() == Value::Kind::Tuple;
  if (is_tuple && name != "index" && name != "count")
    throw EvalError("tuple has no method '" + name + "'");
  if (name == "append") {
    check_arg_names(args, name, {"object"});
    const Value* item = find_arg(args, 0, "object");
    if (item == nullptr) throw EvalError("append() takes exactly one argument");
    items.push_back(*item);
    return Value::none();
  }
  if (name == "extend") {
    check_arg_names(args, name, {"iterable"});
    const Value* iterable = find_arg(args, 0, "iterable");
    if (iterable == nullptr) throw EvalError("extend() takes exactly one argument");
    std::vector<Value> added = iterate(*iterable);
    items.insert(items.end(), added.begin(), added.end());
    return Value::none();
  }
  if (name == "insert") {
    check_arg_names(args, name, {"index", "object"});
    const Value* item = find_arg(args, 1, "object");
    if (item == nullptr) throw EvalError("insert() takes exactly two arguments");
    int64_t index = int_arg(args, 0, "index", 0, name);
    const auto size = static_cast<int64_t>(items.size());
    if (index < 0) index = std::max<int64_t>(0, index + size);
    index = std::min(index, size);
    items.insert(items.begin() + index, *item);
    return Value::none();
  }
  if (name == "pop") {
    check_arg_names(args, name, {"index"});
    if (items.empty()) throw EvalError("pop from empty list");
    int64_t index = int_arg(args, 0, "index", -1, name);
    const auto size = static_cast<int64_t>(items.size());
    if (index < 0) index += size;
    if (index < 0 || index >= size) throw EvalError("pop index out of range");
    Value popped = items[index];
    items.erase(items.begin() + index);
    return popped;
  }
  if (name == "index" || name == "count") {
    check_arg_names(args, name, {"value"});
    const Value* wanted = find_arg(args, 0, "value");
    if (wanted == nullptr) throw EvalError(name + "() takes exactly one argument");
    int64_t count = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!values_equal(items[i], *wanted)) continue;
      if (name == "index") return Value::integer(static_cast<int64_t>(i));
      ++count;
    }
    if (name == "index") throw EvalError(wanted->repr() + " is not in list");
    return Value::integer(count);
  }
  check_arg_names(args, name, {});
  if (name == "copy") return Value::list(items);
  std::reverse(items.begin(), items.end());  // reverse
  return Value::none();
}

Value dict_method(const Value& dict, const std::string& name, const CallArgs& args) {
  const DictData& entries = dict.entries();
  if (name == "get") {
    check_arg_names(args, name, {"key", "default"});
    const Value* key = find_arg(args, 0, "key");
    if (key == nullptr) throw EvalError("get() takes at least 1 argument");
    if (key->is_string())
      if (const Value* found = entries.find(key->as_string())) return *found;
    return arg_or(args, 1, "default", Value::none());
  }
  check_arg_names(args, name, {});
  std::vector<Value> out;
  if (name == "copy") {
    Value copy = Value::dict();
    for (const auto& [key, value] : entries.entries) copy.entries().set(key, value);
    return copy;
  }
  for (const auto& [key, value] : entries.entries) {
    if (name == "items")
      out.push_back(Value::tuple({Value::string(key), value}));
    else if (name == "keys")
      out.push_back(Value::string(key));
    else
      out.push_back(value);
  }
  return Value::list(std::move(out));
}

}  // namespace

std::vector<Value> split_string(const std::string& text, const Value& separator,
                                int64_t max_split) {
  std::vector<Value> parts;
  if (separator.is_none() || separator.is_undefined()) {
    // Runs of whitespace separate; no empty parts at the ends.
    const std::vector<char32_t> code_points = decode_utf8(text);
    size_t i = 0;
    while (i < code_points.size()) {
      while (i < code_points.size() && is_python_space(code_points[i])) ++i;
      if (i == code_points.size()) break;
      if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
        size_t end = code_points.size();
        while (end > i && is_python_space(code_points[end - 1])) --end;
        parts.push_back(
            Value::string(encode_utf8({code_points.begin() + i, code_points.begin() + end})));
        break;
      }
      const size_t start = i;
      while (i < code_points.size() && !is_python_space(code_points[i])) ++i;
      parts.push_back(
          Value::string(encode_utf8({code_points.begin() + start, code_points.begin() + i})));
    }
    return parts;
  }
  if (!separator.is_string())
    throw EvalError(std::string("split(): separator must be str or None, not ") +
                    separator.type_name());
  const std::string& sep = separator.as_string();
  if (sep.empty()) throw EvalError("split(): empty separator");
  size_t from = 0;
  while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
    const size_t found = text.find(sep, from);
    if (found == std::string::npos) break;
    parts.push_back(Value::string(text.substr(from, found - from)));
    from = found + sep.size();
  }
  parts.push_back(Value::string(text.substr(from)));
  return parts;
}

bool has_method(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::String:
      return listed(kStringMethods, name);
    case Value::Kind::List:
      return listed(kListMethods, name);
    case Value::Kind::Tuple:
      return listed(kTupleMethods, name);
    case Value::Kind::Dict:
      return listed(kDictMethods, name);
    default:
      return false;
  }
}

Value bind_method(const Value& object, const std::string& name) {
  Value bound = Value::callable(
      std::string(object.type_name()) + "." + name,
      [object, name](const CallArgs& args) { return call_method(object, name, args); }, object);
  return bound;
}

Value call_method(const Value& object, const std::string& name, const CallArgs& args) {
  if (!has_method(object, name))
    throw EvalError(std::string("'") + object.type_name() + "' object has no method '" + name +
                    "'");
  switch (object.kind()) {
    case Value::Kind::String:
      return string_method(object.as_string(), name, args);
    case Value::Kind::Dict:
      return dict_method(object, name, args);
    default:
      return list_method(object, name, args);
  }
}

}  // namespace dsv3::jinja
