// A multi-turn chat with the model's chat template; the cache keeps the conversation so each
// turn only computes its new tokens.
//   example_chat DIR        (one message per line on stdin; an empty line ends)
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include "api/dsv3.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    const auto lm = dsv3::api::CausalLM::from_pretrained(dir);
    const auto tokenizer = dsv3::api::Tokenizer::from_dir(dir);
    const dsv3::api::ChatPrompt chat_template(tokenizer, dir);
    auto config = dsv3::api::GenerationConfig::from_model_dir(dir, lm.config());
    config.max_new_tokens = 64;
    const dsv3::api::Generator generator(lm.engine(), &tokenizer);
    auto cache = lm.engine().new_cache(4096);
    std::vector<int32_t> cached;  // the tokens in the cache

    nlohmann::ordered_json request;
    request["messages"] = nlohmann::ordered_json::array();
    std::string line;
    while (std::printf("> "), std::fflush(stdout), std::getline(std::cin, line) && !line.empty()) {
      request["messages"].push_back({{"role", "user"}, {"content", line}});
      const std::string text =
          chat_template.render(request, /*add_generation_prompt=*/true, "chat");
      const std::vector<int32_t> prompt = tokenizer.encode(text, false);
      // Keep the cached tokens the new prompt starts with (the previous turns); generate()
      // computes only the rest.
      size_t shared = 0;
      while (shared < cached.size() && shared < prompt.size() && cached[shared] == prompt[shared])
        ++shared;
      cache.truncate(std::min<int64_t>(int64_t(shared), cache.length()));
      const auto reply =
          generator.generate(prompt, cache, config, [](int32_t, std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
            return true;
          });
      std::printf("\n");
      request["messages"].push_back({{"role", "assistant"}, {"content", reply.text}});
      cached = prompt;
      cached.insert(cached.end(), reply.tokens.begin(), reply.tokens.end());
      cached.resize(size_t(cache.length()));
    }
  } catch (const dsv3::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
