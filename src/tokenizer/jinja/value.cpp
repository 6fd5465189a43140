#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

// Printing and comparing recurse into containers; a template can nest them arbitrarily deep.
constexpr int kMaxNesting = 512;

// Containers free their children iteratively: a list nested a million times deep (easy to build
// in a loop) would otherwise overflow the stack in a chain of destructors.
void release_iteratively(std::vector<Value>& values) {
  thread_local std::vector<Value> pending;
  thread_local bool draining = false;
  for (Value& value : values)
    if (value.identity() != nullptr) pending.push_back(std::move(value));
  values.clear();
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    Value last = std::move(pending.back());
    pending.pop_back();
  }
  draining = false;
}

void check_depth(int depth) {
  if (depth > kMaxNesting)
    throw EvalError("values nested more than " + std::to_string(kMaxNesting) + " deep");
}

std::string repr_at(const Value& value, int depth);

std::string container_repr(const Value& value, int depth) {
  check_depth(depth);
  std::string out;
  switch (value.kind()) {
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const bool tuple = value.kind() == Value::Kind::Tuple;
      out += tuple ? '(' : '[';
      const auto& items = value.items();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        out += repr_at(items[i], depth + 1);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      return out;
    }
    case Value::Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.entries().entries) {
        if (!first) out += ", ";
        first = false;
        out += python_repr(key) + ": " + repr_at(item, depth + 1);
      }
      return out + '}';
    }
    case Value::Kind::Namespace: {
      out += "<Namespace {";
      bool first = true;
      for (const auto& [key, item] : value.entries().entries) {
        if (!first) out += ", ";
        first = false;
        out += python_repr(key) + ": " + repr_at(item, depth + 1);
      }
      return out + "}>";
    }
    default:
      return value.str();
  }
}

std::string repr_at(const Value& value, int depth) {
  switch (value.kind()) {
    case Value::Kind::String:
      return python_repr(value.as_string());
    case Value::Kind::Undefined:
      return "Undefined";
    default:
      return value.identity() != nullptr && !value.is_callable() ? container_repr(value, depth)
                                                                 : value.str();
  }
}

bool equal_at(const Value& left, const Value& right, int depth) {
  check_depth(depth);
  if (left.is_number() && right.is_number()) {
    if (left.is_int() && right.is_int()) return left.as_int() == right.as_int();
    return left.as_number() == right.as_number();
  }
  if (left.kind() != right.kind()) return false;
  switch (left.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      return left.as_string() == right.as_string();
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const auto& a = left.items();
      const auto& b = right.items();
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (!equal_at(a[i], b[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const auto& a = left.entries();
      const auto& b = right.entries();
      if (a.entries.size() != b.entries.size()) return false;
      for (const auto& [key, item] : a.entries) {
        const Value* other = b.find(key);
        if (other == nullptr || !equal_at(item, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return left.identity() == right.identity();
  }
}

}  // namespace

struct RenderArena::Registry {
  std::vector<std::weak_ptr<ListData>> lists;
  std::vector<std::weak_ptr<DictData>> dicts;
  size_t prune_at = 1024;

  // Dropping expired entries whenever the registry doubles keeps it proportional to the
  // containers alive, not to all ever created.
  void prune() {
    if (lists.size() + dicts.size() < prune_at) return;
    std::erase_if(lists, [](const auto& list) { return list.expired(); });
    std::erase_if(dicts, [](const auto& dict) { return dict.expired(); });
    prune_at = std::max<size_t>(1024, 2 * (lists.size() + dicts.size()));
  }
};

namespace {
thread_local RenderArena::Registry* active_registry = nullptr;
}  // namespace

RenderArena::RenderArena() : registry_(new Registry), previous_(active_registry) {
  active_registry = registry_;
}

RenderArena::~RenderArena() {
  active_registry = previous_;
  for (const auto& weak : registry_->lists) {
    if (auto list = weak.lock()) {
      std::vector<Value> doomed = std::move(list->items);
      list->items.clear();
      release_iteratively(doomed);
    }
  }
  for (const auto& weak : registry_->dicts) {
    if (auto dict = weak.lock()) {
      std::vector<Value> doomed;
      for (auto& entry : dict->entries) doomed.push_back(std::move(entry.second));
      dict->entries.clear();
      dict->index.clear();
      release_iteratively(doomed);
    }
  }
  delete registry_;
}

ListData::~ListData() { release_iteratively(items); }

DictData::~DictData() {
  std::vector<Value> values;
  values.reserve(entries.size());
  for (auto& entry : entries) values.push_back(std::move(entry.second));
  release_iteratively(values);
}

const Value* DictData::find(const std::string& key) const {
  const auto found = index.find(key);
  return found == index.end() ? nullptr : &entries[found->second].second;
}

void DictData::set(const std::string& key, Value value) {
  const auto found = index.find(key);
  if (found != index.end()) {
    entries[found->second].second = std::move(value);
    return;
  }
  index.emplace(key, entries.size());
  entries.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string what_is_missing) {
  Value value;
  value.storage_ = std::move(what_is_missing);
  return value;
}

Value Value::none() {
  Value value;
  value.kind_ = Kind::None;
  value.storage_ = std::monostate();
  return value;
}

Value Value::boolean(bool flag) {
  Value value;
  value.kind_ = Kind::Bool;
  value.storage_ = flag;
  return value;
}

Value Value::integer(int64_t number) {
  Value value;
  value.kind_ = Kind::Int;
  value.storage_ = number;
  return value;
}

Value Value::floating(double number) {
  Value value;
  value.kind_ = Kind::Float;
  value.storage_ = number;
  return value;
}

Value Value::string(std::string text) {
  Value value;
  value.kind_ = Kind::String;
  value.storage_ = std::move(text);
  return value;
}

Value Value::list(std::vector<Value> items) {
  Value value;
  value.kind_ = Kind::List;
  auto data = std::make_shared<ListData>(std::move(items));
  if (active_registry) {
    active_registry->lists.push_back(data);
    active_registry->prune();
  }
  value.storage_ = std::move(data);
  return value;
}

Value Value::tuple(std::vector<Value> items) {
  Value value = list(std::move(items));
  value.kind_ = Kind::Tuple;
  return value;
}

Value Value::dict() {
  Value value;
  value.kind_ = Kind::Dict;
  auto data = std::make_shared<DictData>();
  if (active_registry) {
    active_registry->dicts.push_back(data);
    active_registry->prune();
  }
  value.storage_ = std::move(data);
  return value;
}

Value Value::namespace_object() {
  Value value = dict();
  value.kind_ = Kind::Namespace;
  return value;
}

Value Value::callable(std::string name, std::function<Value(const CallArgs&)> function) {
  return callable(std::move(name), std::move(function), Value());
}

Value Value::callable(std::string name, std::function<Value(const CallArgs&)> function,
                      Value bound_object) {
  Value value;
  value.kind_ = Kind::Callable;
  value.storage_ = std::make_shared<Callable>(
      Callable{std::move(name), std::move(function), std::move(bound_object)});
  return value;
}

int64_t Value::as_int() const {
  return kind_ == Kind::Bool ? (as_bool() ? 1 : 0) : std::get<int64_t>(storage_);
}

double Value::as_number() const {
  return kind_ == Kind::Float ? std::get<double>(storage_) : static_cast<double>(as_int());
}

std::vector<Value>& Value::items() const {
  return std::get<std::shared_ptr<ListData>>(storage_)->items;
}

DictData& Value::entries() const { return *std::get<std::shared_ptr<DictData>>(storage_); }

const Callable& Value::function() const { return *std::get<std::shared_ptr<Callable>>(storage_); }

const void* Value::identity() const {
  if (auto list = std::get_if<std::shared_ptr<ListData>>(&storage_)) return list->get();
  if (auto dict = std::get_if<std::shared_ptr<DictData>>(&storage_)) return dict->get();
  if (auto callable = std::get_if<std::shared_ptr<Callable>>(&storage_)) return callable->get();
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return as_bool();
    case Kind::Int:
      return as_int() != 0;
    case Kind::Float:
      return as_number() != 0.0;
    case Kind::String:
      return !as_string().empty();
    case Kind::List:
    case Kind::Tuple:
      return !items().empty();
    case Kind::Dict:
      return !entries().entries.empty();
    default:
      return true;
  }
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::Undefined:
      return "";
    case Kind::None:
      return "None";
    case Kind::Bool:
      return as_bool() ? "True" : "False";
    case Kind::Int:
      return std::to_string(as_int());
    case Kind::Float:
      return format_float(as_number());
    case Kind::String:
      return as_string();
    case Kind::Callable:
      return "<function " + function().name + ">";
    default:
      return container_repr(*this, 0);
  }
}

std::string Value::repr() const { return repr_at(*this, 0); }

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined:
      return "undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::List:
      return "list";
    case Kind::Tuple:
      return "tuple";
    case Kind::Dict:
      return "dict";
    case Kind::Namespace:
      return "Namespace";
    case Kind::Callable:
      return "function";
  }
  return "value";
}

bool values_equal(const Value& left, const Value& right) { return equal_at(left, right, 0); }

int compare_values(const Value& left, const Value& right, int depth) {
  check_depth(depth);
  if (left.is_number() && right.is_number()) {
    if (left.is_int() && right.is_int())
      return left.as_int() < right.as_int() ? -1 : left.as_int() > right.as_int() ? 1 : 0;
    const double a = left.as_number();
    const double b = right.as_number();
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (left.is_string() && right.is_string()) {
    // UTF-8 byte order is code point order, which is Python's string order.
    const int order = left.as_string().compare(right.as_string());
    return order < 0 ? -1 : order > 0 ? 1 : 0;
  }
  if (left.is_sequence() && right.kind() == left.kind()) {
    const auto& a = left.items();
    const auto& b = right.items();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (values_equal(a[i], b[i])) continue;
      return compare_values(a[i], b[i], depth + 1);
    }
    return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
  }
  throw EvalError(std::string("cannot order ") + left.type_name() + " and " + right.type_name());
}

std::string format_float(double number) {
  if (std::isnan(number)) return "nan";
  if (std::isinf(number)) return number > 0 ? "inf" : "-inf";
  if (number == 0.0) return std::signbit(number) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then laid out the way Python's repr does: positional notation
  // for exponents in [-4, 16), scientific otherwise.
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof buffer, number, std::chars_format::scientific);
  std::string scientific(buffer, result.ptr);
  const bool negative = scientific[0] == '-';
  if (negative) scientific.erase(0, 1);
  const size_t e_at = scientific.find('e');
  const int exponent = std::stoi(scientific.substr(e_at + 1));
  std::string digits = scientific.substr(0, e_at);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out += digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof exponent_text, "e%c%02d", exponent < 0 ? '-' : '+',
                exponent < 0 ? -exponent : exponent);
  return out + exponent_text;
}

const Value* find_arg(const CallArgs& args, size_t position, std::string_view name) {
  if (position < args.positional.size()) return &args.positional[position];
  for (const auto& [key, value] : args.keyword)
    if (key == name) return &value;
  return nullptr;
}

Value arg_or(const CallArgs& args, size_t position, std::string_view name, Value fallback) {
  const Value* found = find_arg(args, position, name);
  return found ? *found : std::move(fallback);
}

void check_arg_names(const CallArgs& args, std::string_view function,
                     std::initializer_list<std::string_view> names) {
  if (args.positional.size() > names.size())
    throw EvalError(std::string(function) + "() takes at most " + std::to_string(names.size()) +
                    " arguments, got " + std::to_string(args.positional.size()));
  size_t position = 0;
  for (const auto& [key, value] : args.keyword) {
    bool known = false;
    position = 0;
    for (std::string_view name : names) {
      if (name == key) {
        known = true;
        if (position < args.positional.size())
          throw EvalError(std::string(function) + "() got argument '" + key + "' twice");
      }
      ++position;
    }
    if (!known)
      throw EvalError(std::string(function) + "() got an unexpected keyword argument '" + key +
                      "'");
  }
}

}  // namespace dsv3::jinja
