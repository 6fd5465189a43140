// ChatOutputParser: reasoning and DeepSeek tool calls split out of generated text, in both
// template formats, whole and streamed one character at a time.
#include "server/chat_output_parser.h"

#include <gtest/gtest.h>

namespace dsv3::server {
namespace {

ChatDelta parse_whole(bool starts_in_reasoning, const std::string& text) {
  ChatOutputParser parser(starts_in_reasoning, "call_");
  ChatDelta delta = parser.push(text);
  delta.append(parser.finish());
  return delta;
}

// The same text pushed byte by byte must give the same message: tags split across pieces
// are held back, never leaked into content.
ChatDelta parse_bytewise(bool starts_in_reasoning, const std::string& text) {
  ChatOutputParser parser(starts_in_reasoning, "call_");
  ChatDelta delta;
  for (char c : text) delta.append(parser.push(std::string(1, c)));
  delta.append(parser.finish());
  return delta;
}

void expect_same(const ChatDelta& a, const ChatDelta& b) {
  EXPECT_EQ(a.content, b.content);
  EXPECT_EQ(a.reasoning, b.reasoning);
  ASSERT_EQ(a.tool_calls.size(), b.tool_calls.size());
  for (size_t i = 0; i < a.tool_calls.size(); ++i) {
    EXPECT_EQ(a.tool_calls[i].name, b.tool_calls[i].name);
    EXPECT_EQ(a.tool_calls[i].arguments, b.tool_calls[i].arguments);
  }
}

TEST(ChatOutputParser, PlainTextIsContent) {
  const std::string text = "Hello <thin world, a < b and <｜tool";
  for (const ChatDelta& delta : {parse_whole(false, text), parse_bytewise(false, text)}) {
    EXPECT_EQ(delta.content, text);
    EXPECT_TRUE(delta.reasoning.empty());
    EXPECT_TRUE(delta.tool_calls.empty());
  }
}

TEST(ChatOutputParser, ThinkBlockBecomesReasoning) {
  const std::string text = "<think>\nLet me see.\n</think>\n\nThe answer is 4.";
  const ChatDelta whole = parse_whole(false, text);
  EXPECT_EQ(whole.reasoning, "\nLet me see.\n");
  EXPECT_EQ(whole.content, "The answer is 4.");
  expect_same(whole, parse_bytewise(false, text));
}

TEST(ChatOutputParser, PromptOpenedTheThinkBlock) {
  const std::string text = "hmm, 2+2</think>4";
  const ChatDelta whole = parse_whole(true, text);
  EXPECT_EQ(whole.reasoning, "hmm, 2+2");
  EXPECT_EQ(whole.content, "4");
  expect_same(whole, parse_bytewise(true, text));
  // Cut off while thinking: all of it is reasoning.
  EXPECT_EQ(parse_whole(true, "still thinking").reasoning, "still thinking");
}

TEST(ChatOutputParser, DeepSeekV3ToolCalls) {
  const std::string text =
      "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
      "```json\n{\"city\": "
      "\"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
      "get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const ChatDelta whole = parse_whole(false, text);
  EXPECT_EQ(whole.content, "Let me check.");
  ASSERT_EQ(whole.tool_calls.size(), 2u);
  EXPECT_EQ(whole.tool_calls[0].name, "get_weather");
  EXPECT_EQ(whole.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(whole.tool_calls[0].id, "call_0");
  EXPECT_EQ(whole.tool_calls[1].name, "get_time");
  EXPECT_EQ(whole.tool_calls[1].arguments, "{}");
  EXPECT_EQ(whole.tool_calls[1].id, "call_1");
  expect_same(whole, parse_bytewise(false, text));
}

TEST(ChatOutputParser, DeepSeekV31ToolCallsAfterThinking) {
  const std::string text =
      "I need the "
      "weather.</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
      "{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const ChatDelta whole = parse_whole(true, text);
  EXPECT_EQ(whole.reasoning, "I need the weather.");
  EXPECT_EQ(whole.content, "");
  ASSERT_EQ(whole.tool_calls.size(), 1u);
  EXPECT_EQ(whole.tool_calls[0].name, "get_weather");
  EXPECT_EQ(whole.tool_calls[0].arguments, "{\"city\": \"Oslo\"}");
  expect_same(whole, parse_bytewise(true, text));
}

TEST(ChatOutputParser, UnfinishedToolCallIsReturnedAsContent) {
  const std::string text =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":";
  const ChatDelta whole = parse_whole(false, text);
  EXPECT_TRUE(whole.tool_calls.empty());
  EXPECT_NE(whole.content.find("{\"a\":"), std::string::npos);
}

}  // namespace
}  // namespace dsv3::server
