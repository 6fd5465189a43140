// Between JSON and interpreter values: the render context comes in as JSON, and the `tojson`
// filter writes JSON exactly as Python's json.dumps does (which transformers' tojson calls).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

Value value_from_json(const nlohmann::json& json);
// Keeps object keys in document order, as Python's json.loads does; prefer this one.
Value value_from_json(const nlohmann::ordered_json& json);
// Parses JSON text (the `from_json` filter); throws EvalError on malformed text.
Value parse_json_text(std::string_view text);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys).
struct JsonStyle {
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool ensure_ascii = false;
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonStyle& style);

}  // namespace dsv3::jinja
