// Tokens -> syntax tree, following Python Jinja2's grammar and operator precedence. Statements
// the interpreter does not implement (include, extends, import, ...) are rejected here with
// their name and position, never skipped.
#pragma once

#include <string_view>

#include "tokenizer/jinja/ast.h"

namespace dsv3::jinja {

// Throws dsv3::Error "chat template: line L col C: ..." on any syntax error.
Body parse_template(std::string_view source);

}  // namespace dsv3::jinja
