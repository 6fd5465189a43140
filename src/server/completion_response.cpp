#include "server/completion_response.h"

#include <algorithm>

namespace dsv3::server {

CompletionResponse::CompletionResponse(const CompletionRequest& request, ResponseHeader header)
    : chat_(request.endpoint == Endpoint::kChat),
      stream_(request.stream),
      include_usage_(request.include_usage),
      header_(std::move(header)),
      cached_tokens_(request.prompts.size(), 0) {
  for (const auto& prompt : request.prompts) prompt_tokens_.push_back(int64_t(prompt.size()));
  for (size_t i = 0; i < request.choices.size(); ++i)
    choices_.push_back(Choice{
        i / size_t(request.n),
        ChatOutputParser(
            request.starts_in_reasoning,
            "call_" + header_.id.substr(header_.id.find('-') + 1) + "_" + std::to_string(i) + "_"),
        {},
        "",
        0,
        0,
        false,
        "",
        ""});
}

Usage CompletionResponse::usage() const {
  Usage usage;
  for (size_t p = 0; p < prompt_tokens_.size(); ++p) {
    usage.prompt_tokens += prompt_tokens_[p];
    usage.cached_tokens += cached_tokens_[p];
  }
  for (const Choice& choice : choices_) usage.completion_tokens += choice.generated;
  return usage;
}

std::string CompletionResponse::advance(const std::vector<ChoiceUpdate>& updates) {
  std::string out;
  if (stream_ && !opened_ && chat_)
    for (size_t i = 0; i < choices_.size(); ++i)
      out += event(
          chat_chunk_json(header_, i, Json{{"role", "assistant"}, {"content", ""}}, std::nullopt));
  opened_ = true;
  for (const ChoiceUpdate& update : updates) out += apply(update);
  if (!complete_ &&
      std::all_of(choices_.begin(), choices_.end(), [](const Choice& c) { return c.finished; })) {
    complete_ = true;
    out += closing();
  }
  return out;
}

std::string CompletionResponse::apply(const ChoiceUpdate& update) {
  Choice& choice = choices_.at(update.choice);
  choice.generated = std::max(choice.generated, update.generated_tokens);
  cached_tokens_[choice.prompt] =
      std::max(cached_tokens_[choice.prompt], update.cached_prompt_tokens);
  std::string out;
  if (chat_) {
    ChatDelta delta = choice.parser.push(update.text);
    if (update.finished) delta.append(choice.parser.finish());
    if (stream_ && !delta.empty())
      out += event(chat_chunk_json(header_, update.choice,
                                   chat_delta_json(delta, choice.tool_calls), std::nullopt));
    choice.tool_calls += int64_t(delta.tool_calls.size());
    choice.message.append(std::move(delta));
  } else {
    if (stream_ && !update.text.empty())
      out += event(completion_chunk_json(header_, update.choice, update.text, std::nullopt));
    choice.text += update.text;
  }
  if (!update.finished) return out;
  choice.finished = true;
  choice.error = update.error;
  const bool ended_by_model =
      update.finish == FinishReason::kEos || update.finish == FinishReason::kStop;
  choice.finish_reason =
      ended_by_model && choice.tool_calls > 0 ? "tool_calls" : finish_reason_name(update.finish);
  if (stream_) {
    if (!choice.error.empty())
      out += event(error_json("generation failed: " + choice.error, "server_error"));
    out +=
        chat_ ? event(chat_chunk_json(header_, update.choice, Json::object(), choice.finish_reason))
              : event(completion_chunk_json(header_, update.choice, "", choice.finish_reason));
  }
  return out;
}

std::string CompletionResponse::closing() const {
  if (stream_) {
    std::string out;
    if (include_usage_)
      out += event(
          usage_chunk_json(header_, chat_ ? "chat.completion.chunk" : "text_completion", usage()));
    return out + "data: [DONE]\n\n";
  }
  for (const Choice& choice : choices_)
    if (!choice.error.empty())
      return dump_json(error_json("generation failed: " + choice.error, "server_error"));
  if (chat_) {
    std::vector<ChatChoice> choices;
    for (const Choice& choice : choices_) choices.push_back({choice.message, choice.finish_reason});
    return dump_json(chat_completion_json(header_, choices, usage()));
  }
  std::vector<TextChoice> choices;
  for (const Choice& choice : choices_) choices.push_back({choice.text, choice.finish_reason});
  return dump_json(completion_json(header_, choices, usage()));
}

}  // namespace dsv3::server
