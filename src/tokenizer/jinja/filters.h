// Jinja filters (`value | name(args)`) with Python Jinja2's behaviour, and `tojson` as
// transformers defines it (json.dumps with ensure_ascii=False, keys in their order).
#pragma once

#include <string>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

bool has_filter(const std::string& name);
// Throws EvalError for an unknown filter or bad arguments.
Value apply_filter(const std::string& name, const Value& input, const CallArgs& args);

}  // namespace dsv3::jinja
