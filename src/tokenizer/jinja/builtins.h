// Global functions templates can call: range, namespace, dict, raise_exception (transformers),
// strftime_now (transformers; a fixed time can be given for reproducible output).
#pragma once

#include <cstdint>
#include <optional>

#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

struct BuiltinOptions {
  int64_t max_range_size = 1'000'000;
  // If set, strftime_now formats this UNIX time (UTC) instead of the local time now.
  std::optional<int64_t> fixed_epoch_seconds;
};

// Fills `scope` with the builtin functions.
void add_builtins(DictData& scope, const BuiltinOptions& options);

// What raise_exception throws: the message is the template's own.
class TemplateRaised : public EvalError {
 public:
  explicit TemplateRaised(const std::string& message) : EvalError(message) {}
};

}  // namespace dsv3::jinja
