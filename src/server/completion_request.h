// An OpenAI request body (/v1/chat/completions or /v1/completions) checked field by field and
// turned into our types: prompt token ids, a GenerationConfig per choice, streaming options.
// Unknown fields are ignored, as the OpenAI API does; known fields of the wrong type or out of
// range give a RequestError naming the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "generate/chat_prompt.h"
#include "generate/generator.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

enum class Endpoint { kChat, kCompletion };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  // One prompt for chat; /v1/completions accepts a list (each gets `n` choices).
  std::vector<std::vector<int32_t>> prompts;
  int64_t n = 1;  // choices per prompt
  // Choice i of prompt p is choices[p * n + i]: max tokens, sampling (its own seed), stops.
  std::vector<GenerationConfig> choices;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Chat only: the rendered prompt ends inside an open <think> (a reasoning template), so the
  // output starts as reasoning.
  bool starts_in_reasoning = false;
};

struct RequestLimits {
  int64_t context = 4096;          // positions per sequence (prompt + completion)
  int64_t max_choices = 16;        // n times the number of prompts
  int64_t default_max_tokens = 0;  // 0: whatever the context leaves
  int64_t vocab_size = 0;          // the model's: prompt token ids must be below it
};

class RequestParser {
 public:
  // `chat_prompt` may be null (no chat template): chat requests are then refused.
  RequestParser(const Tokenizer& tokenizer, const ChatPrompt* chat_prompt,
                GenerationConfig defaults, RequestLimits limits);

  CompletionRequest parse(Endpoint endpoint, const nlohmann::ordered_json& body) const;

  const RequestLimits& limits() const { return limits_; }

 private:
  std::vector<int32_t> chat_prompt_ids(const nlohmann::ordered_json& body,
                                       bool& starts_in_reasoning) const;
  std::vector<std::vector<int32_t>> completion_prompt_ids(const nlohmann::ordered_json& body) const;

  const Tokenizer& tokenizer_;
  const ChatPrompt* chat_prompt_;
  GenerationConfig defaults_;
  RequestLimits limits_;
};

}  // namespace dsv3::server
