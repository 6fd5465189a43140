#include "generate/generator.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "generate/text_stream.h"
#include "util/error.h"

namespace dsv3 {

namespace {

using nlohmann::json;

bool is_eos(const GenerationConfig& config, int32_t id) {
  return std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) !=
         config.eos_token_ids.end();
}

// The state of one sequence being generated.
struct Sequence {
  std::vector<int32_t> history;  // prompt + generated
  std::vector<int32_t> pending;  // tokens to feed next
  LatentCache* cache;
  Sampler sampler;
  std::optional<TextStream> text;
  GenerationResult result;
  bool done = false;
};

Sequence start_sequence(std::span<const int32_t> prompt, LatentCache& cache,
                        const GenerationConfig& config, const Tokenizer* tokenizer) {
  if (prompt.empty()) throw Error("generate: the prompt is empty");
  if (int64_t(prompt.size()) > cache.capacity())
    throw Error("the prompt has " + std::to_string(prompt.size()) +
                " tokens, more than the context of " + std::to_string(cache.capacity()) +
                " (raise --ctx)");
  if (cache.length() >= int64_t(prompt.size())) cache.truncate(int64_t(prompt.size()) - 1);
  Sequence sequence{std::vector<int32_t>(prompt.begin(), prompt.end()),
                    std::vector<int32_t>(prompt.begin() + cache.length(), prompt.end()),
                    &cache, Sampler(config.sampling), std::nullopt, {}, false};
  if (tokenizer) sequence.text.emplace(*tokenizer, config.stop_strings);
  if (config.max_new_tokens <= 0) sequence.done = true;
  return sequence;
}

// Samples from `logits`, records the token, decides whether the sequence is finished.
bool take_step(Sequence& sequence, std::span<float> logits, const GenerationConfig& config,
               const TokenCallback& on_token) {
  const int32_t id = sequence.sampler.sample(logits, sequence.history);
  sequence.history.push_back(id);
  sequence.result.tokens.push_back(id);
  GenerationResult& result = sequence.result;
  std::string piece;
  if (is_eos(config, id)) {
    result.finish = FinishReason::kEos;
    sequence.done = true;
    if (sequence.text) piece = sequence.text->finish();
  } else if (sequence.text) {
    piece = sequence.text->push(id);
    if (sequence.text->stopped()) {
      result.finish = FinishReason::kStop;
      sequence.done = true;
    }
  }
  if (!sequence.done && int64_t(result.tokens.size()) >= config.max_new_tokens) {
    result.finish = FinishReason::kLength;
    sequence.done = true;
  }
  if (!sequence.done && sequence.cache->length() + 1 > sequence.cache->capacity()) {
    result.finish = FinishReason::kContext;
    sequence.done = true;
  }
  if (sequence.done && sequence.text && result.finish != FinishReason::kEos &&
      result.finish != FinishReason::kStop)
    piece += sequence.text->finish();
  if (on_token && !on_token(id, piece)) {
    result.finish = FinishReason::kCancelled;
    sequence.done = true;
  }
  if (sequence.text) result.text = sequence.text->text();
  sequence.pending.assign(1, id);
  return sequence.done;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kContext:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

GenerationConfig GenerationConfig::from_model_dir(const std::string& dir, const Config& model_config) {
  GenerationConfig config;
  for (int64_t eos : model_config.eos_token_ids) config.eos_token_ids.push_back(int32_t(eos));
  const std::filesystem::path path = std::filesystem::path(dir) / "generation_config.json";
  std::ifstream file(path);
  if (!file) return config;
  std::stringstream text;
  text << file.rdbuf();
  const json object = json::parse(text.str(), nullptr, false);
  if (!object.is_object()) throw Error(path.string() + ": not a JSON object");
  auto number = [&](const char* name, auto& out) {
    auto it = object.find(name);
    if (it == object.end() || it->is_null()) return;
    if (!it->is_number()) throw Error(path.string() + ": field \"" + name + "\" must be a number");
    out = it->get<std::remove_reference_t<decltype(out)>>();
  };
  if (auto it = object.find("do_sample"); it != object.end() && it->is_boolean())
    config.sampling.do_sample = it->get<bool>();
  number("temperature", config.sampling.temperature);
  number("top_k", config.sampling.top_k);
  number("top_p", config.sampling.top_p);
  number("min_p", config.sampling.min_p);
  number("repetition_penalty", config.sampling.repetition_penalty);
  number("max_new_tokens", config.max_new_tokens);
  if (auto it = object.find("eos_token_id"); it != object.end() && !it->is_null()) {
    config.eos_token_ids.clear();
    if (it->is_number_integer()) config.eos_token_ids.push_back(it->get<int32_t>());
    else if (it->is_array())
      for (const auto& id : *it)
        if (id.is_number_integer()) config.eos_token_ids.push_back(id.get<int32_t>());
  }
  config.sampling.validate();
  return config;
}

Generator::Generator(const CausalLM& model, const Tokenizer* tokenizer)
    : model_(model), tokenizer_(tokenizer) {}

GenerationResult Generator::generate(std::span<const int32_t> prompt, LatentCache& cache,
                                     const GenerationConfig& config,
                                     const TokenCallback& on_token) const {
  Sequence sequence = start_sequence(prompt, cache, config, tokenizer_);
  while (!sequence.done) {
    std::vector<float> logits = model_.forward(sequence.pending, cache, 1);
    take_step(sequence, logits, config, on_token);
  }
  return std::move(sequence.result);
}

std::vector<GenerationResult> Generator::generate_batch(
    const std::vector<std::vector<int32_t>>& prompts, const GenerationConfig& config,
    int64_t context) const {
  std::vector<std::unique_ptr<LatentCache>> caches;
  std::vector<Sequence> sequences;
  for (const auto& prompt : prompts) {
    caches.push_back(std::make_unique<LatentCache>(model_.new_cache(context)));
    sequences.push_back(start_sequence(prompt, *caches.back(), config, tokenizer_));
  }
  const int64_t vocab = model_.config().vocab_size;
  for (;;) {
    std::vector<SequenceInput> inputs;
    std::vector<Sequence*> active;
    for (auto& sequence : sequences) {
      if (sequence.done) continue;
      inputs.push_back({sequence.pending, sequence.cache});
      active.push_back(&sequence);
    }
    if (active.empty()) break;
    std::vector<float> logits = model_.forward_batch(inputs, 1);
    for (size_t i = 0; i < active.size(); ++i)
      take_step(*active[i], std::span(logits).subspan(i * vocab, vocab), config, {});
  }
  std::vector<GenerationResult> results;
  for (auto& sequence : sequences) results.push_back(std::move(sequence.result));
  return results;
}

}  // namespace dsv3
