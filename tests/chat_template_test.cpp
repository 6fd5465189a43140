// Golden parity: every conversation in tests/golden/chat/golden.jsonl, rendered with every
// published template of the DeepSeek-V3 family, must come out byte for byte as transformers'
// Jinja2 renders it (see tests/golden/chat/generate.js for how the golden data was made).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "util/error.h"

namespace {

const std::string kGoldenDir = std::string(DSV3_SOURCE_DIR) + "/tests/golden/chat";

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::vector<nlohmann::ordered_json> read_golden() {
  std::ifstream file(kGoldenDir + "/golden.jsonl", std::ios::binary);
  std::vector<nlohmann::ordered_json> cases;
  std::string line;
  while (std::getline(file, line))
    if (!line.empty()) cases.push_back(nlohmann::ordered_json::parse(line));
  return cases;
}

TEST(ChatTemplateGolden, EveryGoldenRenderMatchesByteForByte) {
  const auto cases = read_golden();
  ASSERT_GE(cases.size(), 500u);
  std::map<std::string, std::unique_ptr<dsv3::ChatTemplate>> templates;
  std::map<std::string, int> renders_per_template;
  int mismatches = 0;
  for (const auto& golden : cases) {
    const std::string name = golden.at("template").get<std::string>();
    auto& chat_template = templates[name];
    if (!chat_template)
      chat_template = std::make_unique<dsv3::ChatTemplate>(
          read_file(kGoldenDir + "/templates/" + name + ".jinja"));
    std::string rendered;
    try {
      rendered = chat_template->render(golden.at("context"));
    } catch (const dsv3::Error& error) {
      ADD_FAILURE() << name << " / " << golden.at("conversation") << ": " << error.what();
      ++mismatches;
      continue;
    }
    const std::string expected = golden.at("text").get<std::string>();
    if (rendered != expected) {
      ++mismatches;
      if (mismatches <= 5)
        ADD_FAILURE() << name << " / " << golden.at("conversation") << " add_generation_prompt="
                      << golden.at("context").at("add_generation_prompt")
                      << "\nexpected: " << nlohmann::json(expected).dump()
                      << "\nrendered: " << nlohmann::json(rendered).dump();
    }
    ++renders_per_template[name];
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size() << " golden renders";
  // All published templates of the family, plus the tokenizer_config.json one, are covered.
  EXPECT_EQ(templates.size(), 9u);
  for (const auto& [name, count] : renders_per_template) EXPECT_GE(count, 40) << name;
}

TEST(ChatTemplateGolden, SharedTemplatesAreTheGoldenCopies) {
  // The golden copies must be the published templates the issue names, unchanged.
  const std::string shared = std::string(DSV3_SOURCE_DIR) + "/../shared/chat_templates/";
  std::ifstream probe(shared + "deepseek-ai-DeepSeek-V3.jinja");
  if (!probe) GTEST_SKIP() << "shared/chat_templates not beside the repository";
  for (const char* name :
       {"deepseek-ai-DeepSeek-V3", "deepseek-ai-DeepSeek-V3.1", "deepseek-ai-DeepSeek-V3.2",
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "llama-cpp-deepseek-r1", "Kimi-K2-Instruct",
        "Kimi-K2-Thinking", "moonshotai-Kimi-K2"}) {
    EXPECT_EQ(read_file(shared + name + ".jinja"),
              read_file(kGoldenDir + "/templates/" + name + ".jinja"))
        << name;
  }
}

TEST(ChatTemplate, SortedJsonContextStillRenders) {
  // nlohmann::json (sorted keys) is accepted too; key order only matters for tojson output.
  dsv3::ChatTemplate chat_template(
      "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}");
  const auto context =
      nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "hi"}]})");
  EXPECT_EQ(chat_template.render(context), "user:hi;");
}

TEST(ChatTemplate, DeepSeekTemplateRaisesNothingOnEmptyMessages) {
  dsv3::ChatTemplate chat_template(
      read_file(kGoldenDir + "/templates/tokenizer_config-deepseek_v3.jinja"));
  const auto context = nlohmann::ordered_json::parse(
      R"({"messages": [], "add_generation_prompt": true, "bos_token": "<｜begin▁of▁sentence｜>"})");
  EXPECT_EQ(chat_template.render(context), "<｜begin▁of▁sentence｜><｜Assistant｜>");
}

TEST(ChatTemplate, RuntimeErrorsNameThePosition) {
  dsv3::ChatTemplate chat_template(
      read_file(kGoldenDir + "/templates/tokenizer_config-deepseek_v3.jinja"));
  // A dict where the template concatenates strings: Python raises TypeError, so do we.
  const auto context =
      nlohmann::ordered_json::parse(R"({"messages": [{"role": "user", "content": {"a": 1}}]})");
  try {
    chat_template.render(context);
    FAIL() << "expected an error";
  } catch (const dsv3::Error& error) {
    EXPECT_NE(std::string(error.what()).find("chat template: line 3 col 204: "), std::string::npos)
        << error.what();
    EXPECT_NE(std::string(error.what()).find("'str' and 'dict'"), std::string::npos)
        << error.what();
  }
}

TEST(ChatTemplate, ContextMustBeAnObject) {
  dsv3::ChatTemplate chat_template("x");
  EXPECT_THROW(chat_template.render(nlohmann::ordered_json::array()), dsv3::Error);
}

}  // namespace
