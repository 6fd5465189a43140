// Splits a chat model's generated text into what the OpenAI API returns separately: the
// reasoning of a thinking model (<think>...</think>) as reasoning_content, DeepSeek tool-call
// tokens as tool_calls, and the rest as content. Works on streamed pieces: text that may be
// the start of a tag is held back until it is known not to be one.
//
// Tool calls, as the DeepSeek chat templates write them:
//   V3:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//         (more calls separated by "\n") <｜tool▁calls▁end｜>
//   V3.1:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::server {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text, as the model wrote it
};

// What a piece of output adds to each part of the message.
struct ChatDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;  // complete calls only

  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
  void append(ChatDelta&& other);
};

class ChatOutputParser {
 public:
  // `starts_in_reasoning`: the prompt left a <think> open. Tool call ids are
  // `call_id_prefix` + their index.
  ChatOutputParser(bool starts_in_reasoning, std::string call_id_prefix);

  ChatDelta push(std::string_view text);
  // The end of generation: held text is released (an unfinished tool call as content).
  ChatDelta finish();

  int64_t tool_call_count() const { return tool_call_count_; }

 private:
  enum class Mode { kStart, kReasoning, kContent, kToolCalls, kDone };
  void process(ChatDelta& delta, bool final);
  // Moves held text into `out` except a tail that could begin `tag`.
  void release_until_tag(std::string& out, std::string_view tag, bool final);

  Mode mode_;
  std::string held_;
  std::string call_id_prefix_;
  int64_t tool_call_count_ = 0;
  bool trim_content_start_ = false;  // after </think>, the blank lines before the answer
};

}  // namespace dsv3::server
