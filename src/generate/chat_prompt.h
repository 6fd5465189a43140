// Chat messages -> prompt text with the model's chat template, the way transformers'
// apply_chat_template builds the template context: every key of the request is a template
// variable, plus add_generation_prompt and the special tokens of tokenizer_config.json.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

class ChatPrompt {
 public:
  // Throws dsv3::Error when the tokenizer has no chat template.
  ChatPrompt(const Tokenizer& tokenizer, const std::string& where);

  // `request` holds "messages" (an array) and optionally "tools" and any extra variables;
  // nlohmann::ordered_json keeps the client's key order, which `tojson` prints.
  // Errors name `where`.
  std::string render(const nlohmann::ordered_json& request, bool add_generation_prompt,
                     const std::string& where) const;

 private:
  const Tokenizer& tokenizer_;
  std::unique_ptr<ChatTemplate> template_;
};

}  // namespace dsv3
