#include "server/chat_output_parser.h"

#include <algorithm>

namespace dsv3::server {

namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kJsonFence = "```json";

std::string_view trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

// Length of the longest tail of `text` that is a proper prefix of `tag`.
size_t partial_tag_length(std::string_view text, std::string_view tag) {
  for (size_t length = std::min(tag.size() - 1, text.size()); length > 0; --length)
    if (text.substr(text.size() - length) == tag.substr(0, length)) return length;
  return 0;
}

// One call's text between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>, in either format.
ToolCall parse_call(std::string_view body) {
  ToolCall call;
  const size_t sep = body.find(kSep);
  if (sep == std::string_view::npos) {
    call.name = std::string(trim(body));
    call.arguments = "{}";
    return call;
  }
  const std::string_view before = body.substr(0, sep);
  std::string_view after = body.substr(sep + kSep.size());
  const size_t fence = after.find(kJsonFence);
  if (fence != std::string_view::npos) {  // V3: TYPE<sep>NAME\n```json\nARGS\n```
    call.name = std::string(trim(after.substr(0, fence)));
    std::string_view arguments = after.substr(fence + kJsonFence.size());
    const size_t closing = arguments.rfind("```");
    if (closing != std::string_view::npos) arguments = arguments.substr(0, closing);
    call.arguments = std::string(trim(arguments));
  } else {  // V3.1: NAME<sep>ARGS
    call.name = std::string(trim(before));
    call.arguments = std::string(trim(after));
  }
  return call;
}

}  // namespace

void ChatDelta::append(ChatDelta&& other) {
  reasoning += other.reasoning;
  content += other.content;
  for (auto& call : other.tool_calls) tool_calls.push_back(std::move(call));
}

ChatOutputParser::ChatOutputParser(bool starts_in_reasoning, std::string call_id_prefix)
    : mode_(starts_in_reasoning ? Mode::kReasoning : Mode::kStart),
      call_id_prefix_(std::move(call_id_prefix)) {}

ChatDelta ChatOutputParser::push(std::string_view text) {
  held_ += text;
  ChatDelta delta;
  process(delta, false);
  return delta;
}

ChatDelta ChatOutputParser::finish() {
  ChatDelta delta;
  process(delta, true);
  if (mode_ == Mode::kToolCalls) delta.content += held_;  // a call cut off by the length limit
  held_.clear();
  return delta;
}

void ChatOutputParser::release_until_tag(std::string& out, std::string_view tag, bool final) {
  const size_t keep = final ? 0 : partial_tag_length(held_, tag);
  out.append(held_, 0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
}

void ChatOutputParser::process(ChatDelta& delta, bool final) {
  for (;;) {
    switch (mode_) {
      case Mode::kStart: {  // a <think> may open the output, after blanks
        const size_t first = held_.find_first_not_of(" \t\r\n");
        const std::string_view start =
            first == std::string::npos ? std::string_view() : std::string_view(held_).substr(first);
        if (start.starts_with(kThinkOpen)) {
          held_.erase(0, first + kThinkOpen.size());
          mode_ = Mode::kReasoning;
          continue;
        }
        if (!final && kThinkOpen.starts_with(start)) return;  // may still become one
        mode_ = Mode::kContent;
        continue;
      }
      case Mode::kReasoning: {
        const size_t close = held_.find(kThinkClose);
        if (close == std::string::npos) {
          release_until_tag(delta.reasoning, kThinkClose, final);
          return;
        }
        delta.reasoning.append(held_, 0, close);
        held_.erase(0, close + kThinkClose.size());
        mode_ = Mode::kContent;
        trim_content_start_ = true;
        continue;
      }
      case Mode::kContent: {
        if (trim_content_start_) {
          const size_t text_start = held_.find_first_not_of("\r\n");
          if (text_start == std::string::npos) {
            held_.clear();
            return;
          }
          held_.erase(0, text_start);
          trim_content_start_ = false;
        }
        size_t begin = held_.find(kCallsBegin);
        size_t marker_length = kCallsBegin.size();
        if (const size_t single = held_.find(kCallBegin); single < begin) {
          begin = single;  // a call without the list token: keep its begin for kToolCalls
          marker_length = 0;
        }
        if (begin == std::string::npos) {
          const size_t keep = final ? 0
                                    : std::max(partial_tag_length(held_, kCallsBegin),
                                               partial_tag_length(held_, kCallBegin));
          delta.content.append(held_, 0, held_.size() - keep);
          held_.erase(0, held_.size() - keep);
          return;
        }
        delta.content.append(held_, 0, begin);
        held_.erase(0, begin + marker_length);
        mode_ = Mode::kToolCalls;
        continue;
      }
      case Mode::kToolCalls: {
        const size_t begin = held_.find(kCallBegin);
        const size_t list_end = held_.find(kCallsEnd);
        if (list_end != std::string::npos && list_end < begin) {
          mode_ = Mode::kDone;
          continue;
        }
        if (begin == std::string::npos) return;
        const size_t end = held_.find(kCallEnd, begin);
        if (end == std::string::npos) return;
        ToolCall call = parse_call(std::string_view(held_).substr(begin + kCallBegin.size(),
                                                                  end - begin - kCallBegin.size()));
        call.id = call_id_prefix_ + std::to_string(tool_call_count_++);
        delta.tool_calls.push_back(std::move(call));
        held_.erase(0, end + kCallEnd.size());
        continue;
      }
      case Mode::kDone:
        held_.clear();  // what follows the calls (the end of the turn) is not part of the answer
        return;
    }
  }
}

}  // namespace dsv3::server
