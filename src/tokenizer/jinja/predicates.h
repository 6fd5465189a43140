// Jinja tests, the `x is name(args)` predicates: defined, none, string, mapping, number, ...
#pragma once

#include <string>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

bool has_test(const std::string& name);
// Throws EvalError for an unknown test or bad arguments.
bool apply_test(const std::string& name, const Value& value, const CallArgs& args);

}  // namespace dsv3::jinja
