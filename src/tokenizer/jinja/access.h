// Reading from values the way Jinja does: attribute and item access (a missing key gives an
// undefined value, not an error), slicing, membership and iteration.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

// `object.name`: a method of str/list/dict (bound), else the key or namespace attribute.
Value get_attribute(const Value& object, const std::string& name);
// `object[key]`: dict key, sequence or string index (negative counts from the end).
Value get_item(const Value& object, const Value& key);
// `object[start:stop:step]` with Python's clamping rules.
Value get_slice(const Value& object, std::optional<int64_t> start, std::optional<int64_t> stop,
                std::optional<int64_t> step);
// `item in container`.
bool contains(const Value& container, const Value& item);
// The items a for loop visits: list/tuple items, dict keys, string characters; undefined is empty.
std::vector<Value> iterate(const Value& iterable);
// Jinja's attribute argument of map/sort/selectattr: "a.b.0" walks keys and indexes.
Value get_attribute_path(const Value& object, const std::string& path);
// An error for using an undefined value where a defined one is needed.
[[noreturn]] void fail_undefined(const Value& undefined);

}  // namespace dsv3::jinja
