// Python methods templates call on values: str.split/strip/startswith/..., dict.get/items/...,
// list.append/pop/... (list mutation as Jinja's plain sandbox allows; transformers' immutable
// sandbox would refuse it, but the published Kimi-K2 templates rely on it).
#pragma once

#include <string>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

bool has_method(const Value& object, const std::string& name);
// The method as a callable value bound to `object` (`f = s.upper` then `f()`).
Value bind_method(const Value& object, const std::string& name);
// Calls method `name` of `object`; throws EvalError if it has no such method.
Value call_method(const Value& object, const std::string& name, const CallArgs& args);

// Python str.split(sep=None, maxsplit=-1), shared with filters.
std::vector<Value> split_string(const std::string& text, const Value& separator, int64_t max_split);

}  // namespace dsv3::jinja
