// A model's chat template (the Jinja `chat_template` of tokenizer_config.json), rendered the
// way Hugging Face transformers' apply_chat_template does: Jinja2 semantics with trim_blocks
// and lstrip_blocks, transformers' `tojson` and `raise_exception`, plus `strftime_now`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/interpreter.h"

namespace dsv3 {

class ChatTemplate {
 public:
  // Parses the template; throws dsv3::Error "chat template: line L col C: ..." on a syntax
  // error or a statement this interpreter does not support.
  explicit ChatTemplate(std::string source);
  // The same with other limits against hostile templates than the defaults (tests use small ones).
  ChatTemplate(std::string source, const jinja::RenderLimits& limits);

  // `context` holds messages, add_generation_prompt, optionally tools, bos_token, eos_token and
  // any other template variables. Throws dsv3::Error on runtime errors (a template's
  // raise_exception gives "chat template: line L col C: raise_exception: <its message>").
  // Note: nlohmann::json keeps object keys sorted, so `tools | tojson` would list keys in
  // sorted order; parse the request with nlohmann::ordered_json to keep the client's order,
  // which is what Python (and so transformers) prints.
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Body program_;
  jinja::RenderLimits limits_;
};

}  // namespace dsv3
