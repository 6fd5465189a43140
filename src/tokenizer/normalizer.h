// The "normalizer" of tokenizer.json: rewrites plain text before pre-tokenization. Supported:
// Sequence, Prepend, Replace (String or Regex pattern), Strip. DeepSeek-V3 has an empty
// Sequence. Any other type is refused when loading, never silently skipped.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace dsv3 {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// nullptr when `config` is null or normalizes nothing (e.g. an empty Sequence).
// `where` names the JSON position for error messages.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& where);

}  // namespace dsv3
