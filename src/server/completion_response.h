// Turns a request's ChoiceUpdates into what the client receives: Server-Sent Events in the
// OpenAI chunk format (a role chunk per choice first, deltas, a chunk with the finish reason,
// optionally usage, then "data: [DONE]"), or, without streaming, one JSON body at the end.
// Chat output goes through ChatOutputParser (reasoning, tool calls). Knows nothing of HTTP.
#pragma once

#include <string>
#include <vector>

#include "server/chat_output_parser.h"
#include "server/completion_request.h"
#include "server/openai_format.h"
#include "server/scheduler.h"

namespace dsv3::server {

class CompletionResponse {
 public:
  CompletionResponse(const CompletionRequest& request, ResponseHeader header);

  // Applies the updates; returns the bytes to send now (for a stream, its events; otherwise
  // nothing until every choice has finished, then the whole JSON body).
  std::string advance(const std::vector<ChoiceUpdate>& updates);
  bool complete() const { return complete_; }

 private:
  struct Choice {
    size_t prompt = 0;
    ChatOutputParser parser;
    ChatDelta message;  // chat: everything so far
    std::string text;   // completions: everything so far
    int64_t generated = 0;
    int64_t tool_calls = 0;
    bool finished = false;
    std::string finish_reason;
    std::string error;
  };
  std::string event(const Json& json) const { return "data: " + dump_json(json) + "\n\n"; }
  std::string apply(const ChoiceUpdate& update);
  Usage usage() const;
  std::string closing() const;

  bool chat_;
  bool stream_;
  bool include_usage_;
  ResponseHeader header_;
  std::vector<int64_t> prompt_tokens_;  // per prompt
  std::vector<int64_t> cached_tokens_;  // per prompt
  std::vector<Choice> choices_;
  bool opened_ = false;
  bool complete_ = false;
};

}  // namespace dsv3::server
