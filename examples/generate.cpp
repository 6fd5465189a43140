// Text generation after a prompt, streamed token by token (model.generate()).
//   example_generate DIR "Once upon a time" [max_new_tokens]
#include <cstdio>
#include <cstdlib>

#include "api/dsv3.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR PROMPT [MAX_NEW_TOKENS]\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    const auto lm = dsv3::api::CausalLM::from_pretrained(dir);
    const auto tokenizer = dsv3::api::Tokenizer::from_dir(dir);
    auto config = dsv3::api::GenerationConfig::from_model_dir(dir, lm.config());
    config.max_new_tokens = argc > 3 ? std::atoi(argv[3]) : 32;

    const std::vector<int32_t> prompt = tokenizer.encode(argv[2], /*add_special_tokens=*/true);
    auto cache = lm.engine().new_cache(int64_t(prompt.size()) + config.max_new_tokens);
    const dsv3::api::Generator generator(lm.engine(), &tokenizer);
    std::printf("%s", argv[2]);
    const auto result =
        generator.generate(prompt, cache, config, [](int32_t, std::string_view text) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
          return true;  // false would stop
        });
    std::printf("\n[%zu tokens, finished: %s]\n", result.tokens.size(),
                dsv3::finish_reason_name(result.finish));
  } catch (const dsv3::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
