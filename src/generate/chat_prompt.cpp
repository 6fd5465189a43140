#include "generate/chat_prompt.h"

#include "util/error.h"

namespace dsv3 {

ChatPrompt::ChatPrompt(const Tokenizer& tokenizer, const std::string& where) : tokenizer_(tokenizer) {
  if (tokenizer.chat_template().empty())
    throw Error(where + ": tokenizer_config.json has no chat_template");
  template_ = std::make_unique<ChatTemplate>(tokenizer.chat_template());
}

std::string ChatPrompt::render(const nlohmann::ordered_json& request, bool add_generation_prompt,
                               const std::string& where) const {
  if (!request.is_object() || !request.contains("messages") || !request["messages"].is_array())
    throw Error(where + ": \"messages\" must be an array");
  nlohmann::ordered_json context = request;  // extra template variables ride along
  context["add_generation_prompt"] = add_generation_prompt;
  if (context.contains("tools") && context["tools"].is_null()) context.erase("tools");
  context["bos_token"] = tokenizer_.bos_token();
  context["eos_token"] = tokenizer_.eos_token();
  try {
    return template_->render(context);
  } catch (const Error& error) {
    throw Error(where + ": " + error.what());
  }
}

}  // namespace dsv3
