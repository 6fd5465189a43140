#include "tokenizer/jinja/access.h"

#include "tokenizer/jinja/methods.h"
#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

std::string describe_object(const Value& object) {
  return object.is_none() ? "None" : std::string("'") + object.type_name() + " object'";
}

Value missing(const Value& object, const std::string& what) {
  return Value::undefined(describe_object(object) + " has no attribute " + python_repr(what));
}

}  // namespace

void fail_undefined(const Value& undefined) {
  // A variable's undefined value carries the variable name; others carry a whole sentence
  // (names never contain spaces).
  const std::string& what = undefined.undefined_name();
  if (what.empty()) throw EvalError("value is undefined");
  if (what.find(' ') != std::string::npos) throw EvalError(what);
  throw EvalError("'" + what + "' is undefined");
}

Value get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) fail_undefined(object);
  if (has_method(object, name)) return bind_method(object, name);
  if (object.is_dict_like()) {
    if (const Value* found = object.entries().find(name)) return *found;
    return missing(object, name);
  }
  return missing(object, name);
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fail_undefined(object);
  if (object.is_dict_like()) {
    if (key.is_string())
      if (const Value* found = object.entries().find(key.as_string())) return *found;
    if (key.is_string() && has_method(object, key.as_string()))
      return bind_method(object, key.as_string());
    return Value::undefined(describe_object(object) + " has no attribute " +
                            (key.is_string() ? python_repr(key.as_string()) : key.repr()));
  }
  if ((object.is_sequence() || object.is_string()) && key.is_int() && !key.is_bool()) {
    int64_t index = key.as_int();
    if (object.is_string()) {
      const std::vector<char32_t> code_points = decode_utf8(object.as_string());
      const auto size = static_cast<int64_t>(code_points.size());
      if (index < 0) index += size;
      if (index < 0 || index >= size)
        return Value::undefined("'str object' has no element " + key.repr());
      std::string character;
      append_utf8(character, code_points[index]);
      return Value::string(std::move(character));
    }
    const auto& items = object.items();
    const auto size = static_cast<int64_t>(items.size());
    if (index < 0) index += size;
    if (index < 0 || index >= size)
      return Value::undefined("'" + std::string(object.type_name()) + " object' has no element " +
                              key.repr());
    return items[index];
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined(describe_object(object) + " has no item " + key.repr());
}

Value get_slice(const Value& object, std::optional<int64_t> start, std::optional<int64_t> stop,
                std::optional<int64_t> step_arg) {
  if (object.is_undefined()) fail_undefined(object);
  const int64_t step = step_arg.value_or(1);
  if (step == 0) throw EvalError("slice step cannot be zero");
  std::vector<char32_t> code_points;
  int64_t size = 0;
  if (object.is_string()) {
    code_points = decode_utf8(object.as_string());
    size = static_cast<int64_t>(code_points.size());
  } else if (object.is_sequence()) {
    size = static_cast<int64_t>(object.items().size());
  } else {
    throw EvalError(std::string("'") + object.type_name() + "' object cannot be sliced");
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> bound, int64_t fallback) {
    if (!bound) return fallback;
    int64_t value = *bound;
    if (value < 0) {
      value += size;
      if (value < 0) value = step < 0 ? -1 : 0;
    } else if (value >= size) {
      value = step < 0 ? size - 1 : size;
    }
    return value;
  };
  const int64_t first = adjust(start, step < 0 ? size - 1 : 0);
  const int64_t last = adjust(stop, step < 0 ? -1 : size);
  std::vector<int64_t> indexes;
  for (int64_t i = first; step > 0 ? i < last : i > last; i += step) indexes.push_back(i);
  if (object.is_string()) {
    std::string out;
    for (int64_t i : indexes) append_utf8(out, code_points[i]);
    return Value::string(std::move(out));
  }
  std::vector<Value> items;
  items.reserve(indexes.size());
  for (int64_t i : indexes) items.push_back(object.items()[i]);
  return object.kind() == Value::Kind::Tuple ? Value::tuple(std::move(items))
                                             : Value::list(std::move(items));
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::String:
      if (!item.is_string())
        throw EvalError(std::string("'in <string>' requires string as left operand, not ") +
                        item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::List:
    case Value::Kind::Tuple:
      for (const Value& candidate : container.items())
        if (values_equal(candidate, item)) return true;
      return false;
    case Value::Kind::Dict:
      return item.is_string() && container.entries().find(item.as_string()) != nullptr;
    case Value::Kind::Undefined:
      return false;
    default:
      throw EvalError(std::string("argument of type '") + container.type_name() +
                      "' is not iterable");
  }
}

std::vector<Value> iterate(const Value& iterable) {
  switch (iterable.kind()) {
    case Value::Kind::List:
    case Value::Kind::Tuple:
      return iterable.items();
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& entry : iterable.entries().entries)
        keys.push_back(Value::string(entry.first));
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> characters;
      for (char32_t c : decode_utf8(iterable.as_string())) {
        std::string character;
        append_utf8(character, c);
        characters.push_back(Value::string(std::move(character)));
      }
      return characters;
    }
    case Value::Kind::Undefined:
      return {};
    default:
      throw EvalError(std::string("'") + iterable.type_name() + "' object is not iterable");
  }
}

Value get_attribute_path(const Value& object, const std::string& path) {
  Value current = object;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    current = numeric ? get_item(current, Value::integer(std::stoll(part)))
                      : get_item(current, Value::string(part));
    if (dot == std::string::npos) return current;
    if (current.is_undefined()) return current;
    start = dot + 1;
  }
}

}  // namespace dsv3::jinja
