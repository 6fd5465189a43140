#include "tokenizer/jinja/builtins.h"

#include <ctime>

namespace dsv3::jinja {

namespace {

int64_t int_argument(const Value& value, const char* function) {
  if (!value.is_int())
    throw EvalError(std::string(function) + "(): expected an integer, got " + value.type_name());
  return value.as_int();
}

Value range(const CallArgs& args, int64_t max_size) {
  if (!args.keyword.empty()) throw EvalError("range() takes no keyword arguments");
  const auto& positional = args.positional;
  if (positional.empty() || positional.size() > 3)
    throw EvalError("range() takes 1 to 3 arguments");
  int64_t start = 0;
  int64_t stop = 0;
  int64_t step = 1;
  if (positional.size() == 1) {
    stop = int_argument(positional[0], "range");
  } else {
    start = int_argument(positional[0], "range");
    stop = int_argument(positional[1], "range");
    if (positional.size() == 3) step = int_argument(positional[2], "range");
  }
  if (step == 0) throw EvalError("range() step must not be zero");
  // Size computed in floating point so that hostile bounds cannot overflow.
  const double count = step > 0 ? (static_cast<double>(stop) - start) / step
                                : (static_cast<double>(start) - stop) / -step;
  if (count > static_cast<double>(max_size))
    throw EvalError("range() of more than " + std::to_string(max_size) + " items");
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    items.push_back(Value::integer(i));
  return Value::list(std::move(items));
}

// namespace(...) and dict(...): keyword arguments, optionally after one dict to copy.
Value mapping_from_args(const CallArgs& args, Value mapping, const char* function) {
  if (args.positional.size() > 1)
    throw EvalError(std::string(function) + "() takes at most one positional argument");
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (!source.is_dict_like())
      throw EvalError(std::string(function) + "(): the positional argument must be a dict");
    for (const auto& [key, value] : source.entries().entries) mapping.entries().set(key, value);
  }
  for (const auto& [key, value] : args.keyword) mapping.entries().set(key, value);
  return mapping;
}

std::string strftime_now(const CallArgs& args, std::optional<int64_t> fixed_epoch_seconds) {
  if (args.positional.size() != 1 || !args.positional[0].is_string() || !args.keyword.empty())
    throw EvalError("strftime_now() takes one format string");
  const std::string& format = args.positional[0].as_string();
  if (format.size() > 256) throw EvalError("strftime_now(): format longer than 256 bytes");
  std::tm parts{};
  if (fixed_epoch_seconds) {
    const std::time_t when = static_cast<std::time_t>(*fixed_epoch_seconds);
    if (gmtime_r(&when, &parts) == nullptr) throw EvalError("strftime_now(): time out of range");
  } else {
    const std::time_t now = std::time(nullptr);
    localtime_r(&now, &parts);
  }
  if (format.empty()) return "";
  char buffer[4096];
  const size_t length = std::strftime(buffer, sizeof buffer, format.c_str(), &parts);
  if (length == 0) throw EvalError("strftime_now(): the formatted time is empty or too long");
  return std::string(buffer, length);
}

}  // namespace

void add_builtins(DictData& scope, const BuiltinOptions& options) {
  const int64_t max_range_size = options.max_range_size;
  scope.set("range", Value::callable("range", [max_range_size](const CallArgs& args) {
              return range(args, max_range_size);
            }));
  scope.set("namespace", Value::callable("namespace", [](const CallArgs& args) {
              return mapping_from_args(args, Value::namespace_object(), "namespace");
            }));
  scope.set("dict", Value::callable("dict", [](const CallArgs& args) {
              return mapping_from_args(args, Value::dict(), "dict");
            }));
  scope.set("raise_exception",
            Value::callable("raise_exception", [](const CallArgs& args) -> Value {
              const std::string message = args.positional.empty()
                                              ? std::string("raise_exception() called")
                                              : args.positional[0].str();
              throw TemplateRaised(message);
            }));
  const std::optional<int64_t> fixed = options.fixed_epoch_seconds;
  scope.set("strftime_now", Value::callable("strftime_now", [fixed](const CallArgs& args) {
              return Value::string(strftime_now(args, fixed));
            }));
}

}  // namespace dsv3::jinja
