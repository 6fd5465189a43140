#include "server/completion_request.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <random>

#include "server/request_error.h"

namespace dsv3::server {

namespace {

using Json = nlohmann::ordered_json;

// A field that is present and not null (OpenAI treats null as absent).
const Json* field(const Json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

RequestError wrong_type(const std::string& name, const char* expected, const Json& value) {
  return bad_request("'" + name + "' must be " + expected + ", got " + value.type_name(), name);
}

std::optional<bool> boolean(const Json& object, const char* name) {
  const Json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) throw wrong_type(name, "a boolean", *value);
  return value->get<bool>();
}

std::optional<double> number(const Json& object, const char* name, double low, double high) {
  const Json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_number()) throw wrong_type(name, "a number", *value);
  const double number = value->get<double>();
  if (!(number >= low && number <= high))
    throw bad_request("'" + std::string(name) + "' must be in [" + std::to_string(low) + ", " +
                          std::to_string(high) + "], got " + value->dump(),
                      name);
  return number;
}

std::optional<int64_t> integer(const Json& object, const char* name, int64_t low, int64_t high) {
  const Json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_number_integer()) throw wrong_type(name, "an integer", *value);
  // nlohmann stores non-negative integers as unsigned ones, which may exceed int64_t.
  const bool fits = value->is_number_unsigned()
                        ? value->get<uint64_t>() <= uint64_t(high) &&
                              (low <= 0 || value->get<uint64_t>() >= uint64_t(low))
                        : value->get<int64_t>() >= low && value->get<int64_t>() <= high;
  if (!fits)
    throw bad_request("'" + std::string(name) + "' must be in [" + std::to_string(low) + ", " +
                          std::to_string(high) + "], got " + value->dump(),
                      name);
  return value->get<int64_t>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::optional<std::string> message_content(const Json& message, const std::string& where) {
  const Json* content = field(message, "content");
  if (!content) return std::nullopt;
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) throw wrong_type(where + ".content", "a string or an array", *content);
  std::string text;
  for (const Json& part : *content) {
    const Json* type = part.is_object() ? field(part, "type") : nullptr;
    const Json* part_text = part.is_object() ? field(part, "text") : nullptr;
    if (!type || *type != "text" || !part_text || !part_text->is_string())
      throw bad_request(
          "only text content parts ({\"type\": \"text\", \"text\": ...}) are "
          "supported in " +
              where + ".content",
          where + ".content");
    text += part_text->get<std::string>();
  }
  return text;
}

// An assistant message's tool_calls as the chat templates read them: type, function.name and
// function.arguments (a string; an object is accepted and printed as JSON).
Json tool_calls_of(const Json& calls, const std::string& where) {
  if (!calls.is_array()) throw wrong_type(where, "an array", calls);
  Json normalized = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string call_where = where + "[" + std::to_string(i) + "]";
    const Json& call = calls[i];
    const Json* function = call.is_object() ? field(call, "function") : nullptr;
    const Json* name = function && function->is_object() ? field(*function, "name") : nullptr;
    if (!name || !name->is_string())
      throw bad_request(call_where + ".function.name must be a string", call_where);
    const Json* arguments = field(*function, "arguments");
    Json out = call;
    out["type"] = "function";
    out["function"]["name"] = *name;
    out["function"]["arguments"] = !arguments               ? "{}"
                                   : arguments->is_string() ? arguments->get<std::string>()
                                                            : arguments->dump();
    normalized.push_back(std::move(out));
  }
  return normalized;
}

Json normalized_messages(const Json& body) {
  const Json* messages = field(body, "messages");
  if (!messages) throw bad_request("'messages' is required", "messages");
  if (!messages->is_array()) throw wrong_type("messages", "an array", *messages);
  if (messages->empty()) throw bad_request("'messages' must not be empty", "messages");
  Json normalized = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const Json& message = (*messages)[i];
    if (!message.is_object()) throw wrong_type(where, "an object", message);
    const Json* role_field = field(message, "role");
    if (!role_field || !role_field->is_string())
      throw bad_request(where + ".role must be a string", where + ".role");
    std::string role = role_field->get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system prompt
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      throw bad_request(
          where + ".role must be one of system, developer, user, assistant, tool; got \"" + role +
              "\"",
          where + ".role");
    Json out = message;  // other keys (name, tool_call_id, prefix...) ride along to the template
    out["role"] = role;
    const std::optional<std::string> content = message_content(message, where);
    const Json* tool_calls = field(message, "tool_calls");
    if (role == "assistant" && tool_calls) {
      out["tool_calls"] = tool_calls_of(*tool_calls, where + ".tool_calls");
      out["content"] = content && !content->empty() ? Json(*content) : Json(nullptr);
    } else {
      if (!content) throw bad_request(where + ".content is required", where + ".content");
      out["content"] = *content;
      out.erase("tool_calls");
    }
    normalized.push_back(std::move(out));
  }
  return normalized;
}

Json checked_tools(const Json& tools) {
  if (!tools.is_array()) throw wrong_type("tools", "an array", tools);
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& tool = tools[i];
    const Json* function = tool.is_object() ? field(tool, "function") : nullptr;
    const Json* name = function && function->is_object() ? field(*function, "name") : nullptr;
    if (!name || !name->is_string())
      throw bad_request("tools[" + std::to_string(i) + "].function.name must be a string", "tools");
  }
  return tools;
}

// The rendered prompt leaves a <think> open (only whitespace after it): the model continues
// with reasoning.
bool ends_inside_think(const std::string& prompt) {
  const size_t open = prompt.rfind("<think>");
  if (open == std::string::npos) return false;
  const size_t after = open + 7;
  return prompt.find_first_not_of(" \t\r\n", after) == std::string::npos;
}

std::vector<std::string> stop_strings(const Json& body) {
  const Json* stop = field(body, "stop");
  if (!stop) return {};
  if (stop->is_string()) return {stop->get<std::string>()};
  if (!stop->is_array()) throw wrong_type("stop", "a string or an array of strings", *stop);
  if (stop->size() > 16) throw bad_request("'stop' may hold at most 16 strings", "stop");
  std::vector<std::string> strings;
  for (const Json& item : *stop) {
    if (!item.is_string()) throw wrong_type("stop", "a string or an array of strings", item);
    strings.push_back(item.get<std::string>());
  }
  return strings;
}

void refuse_unsupported(const Json& body, Endpoint endpoint) {
  if (endpoint == Endpoint::kChat) {
    if (boolean(body, "logprobs").value_or(false))
      throw bad_request("'logprobs' is not supported by this server", "logprobs");
  } else {
    if (field(body, "logprobs")) {
      integer(body, "logprobs", 0, 20);
      if (body["logprobs"].get<int64_t>() > 0)
        throw bad_request("'logprobs' is not supported by this server", "logprobs");
    }
    if (boolean(body, "echo").value_or(false))
      throw bad_request("'echo' is not supported by this server", "echo");
    if (const Json* suffix = field(body, "suffix");
        suffix && (!suffix->is_string() || !suffix->get<std::string>().empty()))
      throw bad_request("'suffix' is not supported by this server", "suffix");
  }
}

}  // namespace

RequestParser::RequestParser(const Tokenizer& tokenizer, const ChatPrompt* chat_prompt,
                             GenerationConfig defaults, RequestLimits limits)
    : tokenizer_(tokenizer),
      chat_prompt_(chat_prompt),
      defaults_(std::move(defaults)),
      limits_(limits) {}

std::vector<int32_t> RequestParser::chat_prompt_ids(const Json& body,
                                                    bool& starts_in_reasoning) const {
  if (!chat_prompt_)
    throw RequestError(400, "this model has no chat template; use /v1/completions", "messages");
  // Only what a template reads: the messages, the tools, and chat_template_kwargs (vLLM's
  // extension, e.g. {"thinking": true} for DeepSeek-V3.1).
  Json context;
  context["messages"] = normalized_messages(body);
  const Json* tool_choice = field(body, "tool_choice");
  const bool tools_off = tool_choice && *tool_choice == "none";
  if (const Json* tools = field(body, "tools"); tools && !tools_off)
    context["tools"] = checked_tools(*tools);
  if (const Json* kwargs = field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) throw wrong_type("chat_template_kwargs", "an object", *kwargs);
    for (const auto& [key, value] : kwargs->items())
      if (key != "messages" && key != "tools") context[key] = value;
  }
  std::string prompt;
  try {
    prompt = chat_prompt_->render(context, true, "chat template");
  } catch (const Error& error) {
    throw bad_request(error.what(), "messages");
  }
  starts_in_reasoning = ends_inside_think(prompt);
  return tokenizer_.encode(prompt, false);  // the template wrote the BOS
}

std::vector<std::vector<int32_t>> RequestParser::completion_prompt_ids(const Json& body) const {
  const Json* prompt = field(body, "prompt");
  if (!prompt) throw bad_request("'prompt' is required", "prompt");
  const char* expected =
      "a string, an array of strings, an array of token ids or an array of such arrays";
  auto token_ids = [&](const Json& ids) {
    std::vector<int32_t> out;
    for (const Json& id : ids) {
      if (!id.is_number_integer()) throw wrong_type("prompt", expected, id);
      if (id.is_number_unsigned()
              ? id.get<uint64_t>() >= uint64_t(limits_.vocab_size)
              : id.get<int64_t>() < 0 || id.get<int64_t>() >= limits_.vocab_size)
        throw bad_request("prompt token id " + id.dump() + " is outside the vocabulary [0, " +
                              std::to_string(limits_.vocab_size) + ")",
                          "prompt");
      out.push_back(id.get<int32_t>());
    }
    if (out.empty()) throw bad_request("a prompt of token ids must not be empty", "prompt");
    return out;
  };
  if (prompt->is_string()) return {tokenizer_.encode(prompt->get<std::string>(), true)};
  if (!prompt->is_array()) throw wrong_type("prompt", expected, *prompt);
  if (prompt->empty()) throw bad_request("'prompt' must not be empty", "prompt");
  const Json& first = prompt->front();
  if (first.is_number_integer()) return {token_ids(*prompt)};
  std::vector<std::vector<int32_t>> prompts;
  for (const Json& item : *prompt) {
    if (item.is_string() && first.is_string())
      prompts.push_back(tokenizer_.encode(item.get<std::string>(), true));
    else if (item.is_array() && first.is_array())
      prompts.push_back(token_ids(item));
    else
      throw wrong_type("prompt", expected, item);
  }
  return prompts;
}

CompletionRequest RequestParser::parse(Endpoint endpoint, const Json& body) const {
  CompletionRequest request;
  request.endpoint = endpoint;
  if (const Json* model = field(body, "model"); model && !model->is_string())
    throw wrong_type("model", "a string", *model);
  refuse_unsupported(body, endpoint);
  request.stream = boolean(body, "stream").value_or(false);
  if (const Json* options = field(body, "stream_options")) {
    if (!options->is_object()) throw wrong_type("stream_options", "an object", *options);
    request.include_usage = boolean(*options, "include_usage").value_or(false);
  }
  request.n = integer(body, "n", 1, limits_.max_choices).value_or(1);
  if (const Json* best_of = field(body, "best_of"); best_of && *best_of != Json(request.n))
    throw bad_request("'best_of' other than n is not supported by this server", "best_of");

  // Sampling: the model's generation_config.json, overridden field by field.
  SamplingParams sampling = defaults_.sampling;
  if (auto temperature = number(body, "temperature", 0.0, 2.0)) {
    sampling.temperature = float(*temperature);
    sampling.do_sample = *temperature > 0.0;
  }
  if (auto top_p = number(body, "top_p", 0.0, 1.0)) {
    if (*top_p <= 0.0) throw bad_request("'top_p' must be in (0, 1]", "top_p");
    sampling.top_p = float(*top_p);
  }
  if (auto top_k = integer(body, "top_k", -1, std::numeric_limits<int32_t>::max()))
    sampling.top_k = std::max<int64_t>(*top_k, 0);  // vLLM's -1 means off
  if (auto min_p = number(body, "min_p", 0.0, 1.0)) sampling.min_p = float(*min_p);
  if (auto penalty = number(body, "repetition_penalty", 1e-3, 100.0))
    sampling.repetition_penalty = float(*penalty);
  number(body, "presence_penalty", -2.0, 2.0);  // accepted as OpenAI does, not applied
  number(body, "frequency_penalty", -2.0, 2.0);
  const std::optional<int64_t> seed = integer(body, "seed", std::numeric_limits<int64_t>::min(),
                                              std::numeric_limits<int64_t>::max());
  sampling.seed =
      seed ? uint64_t(*seed) : (uint64_t(std::random_device{}()) << 32) | std::random_device{}();

  std::optional<int64_t> max_tokens =
      integer(body, "max_tokens", 1, std::numeric_limits<int64_t>::max());
  if (endpoint == Endpoint::kChat)
    if (auto max_completion =
            integer(body, "max_completion_tokens", 1, std::numeric_limits<int64_t>::max()))
      max_tokens = max_completion;
  const std::vector<std::string> stops = stop_strings(body);
  const bool ignore_eos = boolean(body, "ignore_eos").value_or(false);  // vLLM's extension
  boolean(body, "parallel_tool_calls");
  if (const Json* user = field(body, "user"); user && !user->is_string())
    throw wrong_type("user", "a string", *user);

  try {
    if (endpoint == Endpoint::kChat)
      request.prompts.push_back(chat_prompt_ids(body, request.starts_in_reasoning));
    else
      request.prompts = completion_prompt_ids(body);
  } catch (const RequestError&) {
    throw;
  } catch (const Error& error) {  // the tokenizer's complaint
    throw bad_request(error.what(), endpoint == Endpoint::kChat ? "messages" : "prompt");
  }
  if (int64_t(request.prompts.size()) * request.n > limits_.max_choices)
    throw bad_request(
        "n times the number of prompts must be at most " + std::to_string(limits_.max_choices),
        "n");

  for (const auto& prompt : request.prompts) {
    const int64_t prompt_tokens = int64_t(prompt.size());
    const int64_t room = limits_.context - prompt_tokens;
    if (room < 1 || (max_tokens && *max_tokens > room))
      throw RequestError(
          400,
          "This model's maximum context length is " + std::to_string(limits_.context) +
              " tokens. However, you requested " +
              std::to_string(prompt_tokens + max_tokens.value_or(1)) + " tokens (" +
              std::to_string(prompt_tokens) + " in the prompt, " +
              std::to_string(max_tokens.value_or(1)) +
              " in the completion). Please reduce the prompt or the completion length.",
          "messages", "context_length_exceeded");
    int64_t limit = room;
    if (limits_.default_max_tokens > 0) limit = std::min(limit, limits_.default_max_tokens);
    for (int64_t i = 0; i < request.n; ++i) {
      GenerationConfig choice;
      choice.max_new_tokens = max_tokens.value_or(limit);
      choice.sampling = sampling;
      choice.sampling.seed = sampling.seed + uint64_t(i);  // choices differ, yet reproducibly
      if (!ignore_eos) choice.eos_token_ids = defaults_.eos_token_ids;
      choice.stop_strings = stops;
      request.choices.push_back(std::move(choice));
    }
  }
  return request;
}

}  // namespace dsv3::server
