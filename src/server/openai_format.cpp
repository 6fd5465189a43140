#include "server/openai_format.h"

namespace dsv3::server {

namespace {

Json null_or(const std::optional<std::string>& value) {
  return value ? Json(*value) : Json(nullptr);
}

Json tool_calls_json(const std::vector<ToolCall>& calls, int64_t first_index, bool with_index) {
  Json array = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    Json call;
    if (with_index) call["index"] = first_index + int64_t(i);
    call["id"] = calls[i].id;
    call["type"] = "function";
    call["function"] = {{"name", calls[i].name}, {"arguments", calls[i].arguments}};
    array.push_back(std::move(call));
  }
  return array;
}

// id, object, created and model: the fields every response object and chunk starts with.
Json response_head(const ResponseHeader& header, const char* object) {
  Json json;
  json["id"] = header.id;
  json["object"] = object;
  json["created"] = header.created;
  json["model"] = header.model;
  return json;
}

}  // namespace

std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json error_json(const RequestError& error) {
  Json body;
  body["error"] = {{"message", error.what()},
                   {"type", error.type()},
                   {"param", error.param().empty() ? Json(nullptr) : Json(error.param())},
                   {"code", error.code().empty() ? Json(nullptr) : Json(error.code())}};
  return body;
}

Json error_json(const std::string& message, const std::string& type, const std::string& code) {
  Json body;
  body["error"] = {{"message", message},
                   {"type", type},
                   {"param", nullptr},
                   {"code", code.empty() ? Json(nullptr) : Json(code)}};
  return body;
}

Json usage_json(const Usage& usage) {
  Json json;
  json["prompt_tokens"] = usage.prompt_tokens;
  json["completion_tokens"] = usage.completion_tokens;
  json["total_tokens"] = usage.prompt_tokens + usage.completion_tokens;
  json["prompt_tokens_details"] = {{"cached_tokens", usage.cached_tokens}};
  return json;
}

Json chat_completion_json(const ResponseHeader& header, const std::vector<ChatChoice>& choices,
                          const Usage& usage) {
  Json json = response_head(header, "chat.completion");
  json["choices"] = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChatDelta& message = choices[i].message;
    Json out;
    out["role"] = "assistant";
    out["content"] = message.content.empty() && !message.tool_calls.empty() ? Json(nullptr)
                                                                            : Json(message.content);
    if (!message.reasoning.empty()) out["reasoning_content"] = message.reasoning;
    if (!message.tool_calls.empty())
      out["tool_calls"] = tool_calls_json(message.tool_calls, 0, false);
    json["choices"].push_back({{"index", i},
                               {"message", std::move(out)},
                               {"logprobs", nullptr},
                               {"finish_reason", choices[i].finish_reason}});
  }
  json["usage"] = usage_json(usage);
  return json;
}

Json chat_delta_json(const ChatDelta& delta, int64_t first_tool_call) {
  Json json = Json::object();
  if (!delta.reasoning.empty()) json["reasoning_content"] = delta.reasoning;
  if (!delta.content.empty()) json["content"] = delta.content;
  if (!delta.tool_calls.empty())
    json["tool_calls"] = tool_calls_json(delta.tool_calls, first_tool_call, true);
  return json;
}

Json chat_chunk_json(const ResponseHeader& header, size_t index, const Json& delta,
                     const std::optional<std::string>& finish_reason) {
  Json json = response_head(header, "chat.completion.chunk");
  json["choices"] = Json::array({Json{{"index", index},
                                      {"delta", delta},
                                      {"logprobs", nullptr},
                                      {"finish_reason", null_or(finish_reason)}}});
  return json;
}

Json completion_json(const ResponseHeader& header, const std::vector<TextChoice>& choices,
                     const Usage& usage) {
  Json json = response_head(header, "text_completion");
  json["choices"] = Json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    json["choices"].push_back({{"index", i},
                               {"text", choices[i].text},
                               {"logprobs", nullptr},
                               {"finish_reason", choices[i].finish_reason}});
  json["usage"] = usage_json(usage);
  return json;
}

Json completion_chunk_json(const ResponseHeader& header, size_t index, const std::string& text,
                           const std::optional<std::string>& finish_reason) {
  Json json = response_head(header, "text_completion");
  json["choices"] = Json::array({Json{{"index", index},
                                      {"text", text},
                                      {"logprobs", nullptr},
                                      {"finish_reason", null_or(finish_reason)}}});
  return json;
}

Json usage_chunk_json(const ResponseHeader& header, const char* object, const Usage& usage) {
  Json json = response_head(header, object);
  json["choices"] = Json::array();
  json["usage"] = usage_json(usage);
  return json;
}

Json model_list_json(const std::string& model, int64_t created, int64_t context) {
  Json entry;
  entry["id"] = model;
  entry["object"] = "model";
  entry["created"] = created;
  entry["owned_by"] = "dsv3";
  entry["max_model_len"] = context;
  Json json;
  json["object"] = "list";
  json["data"] = Json::array({entry});
  return json;
}

}  // namespace dsv3::server
