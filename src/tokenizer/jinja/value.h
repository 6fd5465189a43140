// The value type of the Jinja interpreter, with Python's semantics: what prints, what is true,
// what equals what. Lists, dicts and namespaces are shared by reference (as Python objects are),
// so `ns.items.append(x)` changes the list every holder sees.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "util/error.h"

namespace dsv3::jinja {

// An error found while evaluating, before the interpreter knows where: it adds the template
// position of the expression it was evaluating and rethrows a plain dsv3::Error.
class EvalError : public dsv3::Error {
 public:
  explicit EvalError(const std::string& message) : dsv3::Error(message) {}
};

class Value;
struct ListData;
struct DictData;
struct Callable;

// Arguments of a call: positional first, then keyword (`tojson(indent=2)`).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Value {
 public:
  enum class Kind {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Tuple,
    Dict,
    Namespace,
    Callable
  };

  Value() = default;  // undefined
  static Value undefined(std::string what_is_missing = "");
  static Value none();
  static Value boolean(bool flag);
  static Value integer(int64_t number);
  static Value floating(double number);
  static Value string(std::string text);
  static Value list(std::vector<Value> items = {});
  static Value tuple(std::vector<Value> items);
  static Value dict();
  static Value namespace_object();
  // `bound_object`: the object a bound method captured (so cycle checks can see it).
  static Value callable(std::string name, std::function<Value(const CallArgs&)> function);
  static Value callable(std::string name, std::function<Value(const CallArgs&)> function,
                        Value bound_object);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }  // bool is an int
  bool is_number() const { return is_int() || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple; }
  bool is_mapping() const { return kind_ == Kind::Dict; }
  bool is_dict_like() const { return kind_ == Kind::Dict || kind_ == Kind::Namespace; }
  bool is_callable() const { return kind_ == Kind::Callable; }

  bool as_bool() const { return std::get<bool>(storage_); }
  int64_t as_int() const;  // Int or Bool
  double as_number() const;
  const std::string& as_string() const { return std::get<std::string>(storage_); }
  // For an undefined value: the expression that produced it, for error messages.
  const std::string& undefined_name() const { return std::get<std::string>(storage_); }
  std::vector<Value>& items() const;  // List or Tuple
  DictData& entries() const;          // Dict or Namespace
  const Callable& function() const;
  const void* identity() const;  // the shared container, nullptr for scalars

  bool truthy() const;
  std::string str() const;   // Python str(); undefined prints as ""
  std::string repr() const;  // Python repr(), used inside printed containers
  const char* type_name() const;

 private:
  Kind kind_ = Kind::Undefined;
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<ListData>,
               std::shared_ptr<DictData>, std::shared_ptr<Callable>>
      storage_{std::string()};
};

struct ListData {
  std::vector<Value> items;
  ListData() = default;
  explicit ListData(std::vector<Value> initial) : items(std::move(initial)) {}
  ListData(const ListData&) = delete;
  ListData& operator=(const ListData&) = delete;
  ~ListData();
};

// Insertion-ordered string-keyed map, like a Python dict built from JSON.
struct DictData {
  std::vector<std::pair<std::string, Value>> entries;
  std::unordered_map<std::string, size_t> index;
  DictData() = default;
  DictData(const DictData&) = delete;
  DictData& operator=(const DictData&) = delete;
  ~DictData();

  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value value);
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> call;
  Value bound_object;
};

bool values_equal(const Value& left, const Value& right);
// Python's ordering for numbers, strings and sequences; other pairs are an EvalError.
int compare_values(const Value& left, const Value& right, int depth = 0);
// Python float repr: shortest round-trip digits, "1.0", "1e+16", "inf".
std::string format_float(double number);

// While one is alive, every list and dict created on this thread is recorded, and when it
// ends, those still alive are emptied. A template can make reference cycles
// (`l.append(l)`), which reference counting alone would never free; printing or comparing one
// stops at the nesting limit with an error. One per render.
class RenderArena {
 public:
  RenderArena();
  ~RenderArena();
  RenderArena(const RenderArena&) = delete;
  RenderArena& operator=(const RenderArena&) = delete;

  struct Registry;

 private:
  Registry* registry_;
  Registry* previous_;
};

// Reading call arguments by position or keyword, with a default.
const Value* find_arg(const CallArgs& args, size_t position, std::string_view name);
Value arg_or(const CallArgs& args, size_t position, std::string_view name, Value fallback);
// Throws if there are more positional arguments than `names` or an unknown keyword.
void check_arg_names(const CallArgs& args, std::string_view function,
                     std::initializer_list<std::string_view> names);

}  // namespace dsv3::jinja
