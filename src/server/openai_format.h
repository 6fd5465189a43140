// The JSON shapes of the OpenAI API that the server sends: errors, chat completions and their
// stream chunks, text completions and theirs, usage, the model list.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/chat_output_parser.h"
#include "server/request_error.h"

namespace dsv3::server {

using Json = nlohmann::ordered_json;

// Compact JSON; invalid UTF-8 (which only a client can have sent) becomes U+FFFD.
std::string dump_json(const Json& value);

// {"error": {"message", "type", "param", "code"}}
Json error_json(const RequestError& error);
Json error_json(const std::string& message, const std::string& type, const std::string& code = "");

// What every response of one request shares.
struct ResponseHeader {
  std::string id;  // chatcmpl-... or cmpl-...
  int64_t created = 0;
  std::string model;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from the cache
};
Json usage_json(const Usage& usage);

// A finished chat choice: the whole message, and why it ended.
struct ChatChoice {
  ChatDelta message;
  std::string finish_reason;
};
Json chat_completion_json(const ResponseHeader& header, const std::vector<ChatChoice>& choices,
                          const Usage& usage);
// One chunk of a streamed chat completion; `first_tool_call` numbers the delta's calls.
// With no finish reason, "finish_reason" is null.
Json chat_chunk_json(const ResponseHeader& header, size_t index, const Json& delta,
                     const std::optional<std::string>& finish_reason);
Json chat_delta_json(const ChatDelta& delta, int64_t first_tool_call);

struct TextChoice {
  std::string text;
  std::string finish_reason;
};
Json completion_json(const ResponseHeader& header, const std::vector<TextChoice>& choices,
                     const Usage& usage);
Json completion_chunk_json(const ResponseHeader& header, size_t index, const std::string& text,
                           const std::optional<std::string>& finish_reason);

// The last chunk of a stream with stream_options.include_usage: no choices, only usage.
Json usage_chunk_json(const ResponseHeader& header, const char* object, const Usage& usage);

Json model_list_json(const std::string& model, int64_t created, int64_t context);

}  // namespace dsv3::server
