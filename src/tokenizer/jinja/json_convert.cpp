#include "tokenizer/jinja/json_convert.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja/text.h"

namespace dsv3::jinja {

namespace {

constexpr int kMaxJsonDepth = 512;

template <typename Json>
Value convert(const Json& json, int depth) {
  if (depth > kMaxJsonDepth) throw EvalError("JSON nested more than 512 deep");
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value::boolean(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto number = json.template get<uint64_t>();
      if (number > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw EvalError("integer " + std::to_string(number) + " does not fit in 64 bits");
      return Value::integer(static_cast<int64_t>(number));
    }
    case nlohmann::json::value_t::number_float:
      return Value::floating(json.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::string(json.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(convert(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value dict = Value::dict();
      for (auto it = json.begin(); it != json.end(); ++it)
        dict.entries().set(it.key(), convert(it.value(), depth + 1));
      return dict;
    }
    default:
      throw EvalError("unsupported JSON value (binary or discarded)");
  }
}

void write_string(std::string& out, std::string_view text, bool ensure_ascii) {
  static const char* hex = "0123456789abcdef";
  auto write_u = [&](unsigned unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(unit >> shift) & 0xF];
  };
  out += '"';
  for (char32_t c : decode_utf8(text)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            const char32_t offset = c - 0x10000;
            write_u(0xD800 + (offset >> 10));
            write_u(0xDC00 + (offset & 0x3FF));
          } else {
            write_u(c);
          }
        } else {
          append_utf8(out, c);
        }
    }
  }
  out += '"';
}

void write_json(std::string& out, const Value& value, const JsonStyle& style, int depth) {
  if (depth > kMaxJsonDepth) throw EvalError("tojson: value nested more than 512 deep");
  auto newline = [&](int level) {
    if (!style.indent) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += *style.indent;
  };
  switch (value.kind()) {
    case Value::Kind::None:
      out += "null";
      return;
    case Value::Kind::Bool:
      out += value.as_bool() ? "true" : "false";
      return;
    case Value::Kind::Int:
      out += std::to_string(value.as_int());
      return;
    case Value::Kind::Float: {
      const double number = value.as_number();
      if (std::isnan(number))
        out += "NaN";
      else if (std::isinf(number))
        out += number > 0 ? "Infinity" : "-Infinity";
      else
        out += format_float(number);
      return;
    }
    case Value::Kind::String:
      write_string(out, value.as_string(), style.ensure_ascii);
      return;
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const auto& items = value.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_separator;
        newline(depth + 1);
        write_json(out, items[i], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.entries().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (style.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += style.item_separator;
        newline(depth + 1);
        write_string(out, entries[i]->first, style.ensure_ascii);
        out += style.key_separator;
        write_json(out, entries[i]->second, style, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      throw EvalError(std::string("tojson: object of type ") + value.type_name() +
                      " is not JSON serializable");
  }
}

}  // namespace

Value value_from_json(const nlohmann::json& json) { return convert(json, 0); }

Value value_from_json(const nlohmann::ordered_json& json) { return convert(json, 0); }

Value parse_json_text(std::string_view text) {
  nlohmann::ordered_json parsed;
  try {
    parsed = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    throw EvalError(std::string("from_json: malformed JSON: ") + error.what());
  }
  return convert(parsed, 0);
}

std::string to_json(const Value& value, const JsonStyle& style) {
  std::string out;
  write_json(out, value, style, 0);
  return out;
}

}  // namespace dsv3::jinja
