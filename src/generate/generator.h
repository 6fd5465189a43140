// model.generate(): feed the prompt, then sample one token at a time through the cache until
// EOS, a stop string, max_new_tokens or the end of the context. Streams text as it goes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/latent_cache.h"
#include "generate/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

struct GenerationConfig {
  int64_t max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<int32_t> eos_token_ids;
  std::vector<std::string> stop_strings;

  // generation_config.json of a model directory (do_sample, temperature, top_k, top_p, min_p,
  // repetition_penalty, max_new_tokens, eos_token_id), falling back to config.json's eos.
  static GenerationConfig from_model_dir(const std::string& dir, const Config& config);
};

enum class FinishReason { kEos, kStop, kLength, kContext, kCancelled };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", ... (OpenAI names)

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (an ending EOS included, as generate() does)
  std::string text;             // their text, cut before a stop string, without the EOS
  FinishReason finish = FinishReason::kLength;
};

// Called for each generated token with the text it completes (may be empty); return false to
// cancel.
using TokenCallback = std::function<bool(int32_t id, std::string_view text)>;

class Generator {
 public:
  // `tokenizer` may be null: then no text is produced and stop strings do not apply.
  Generator(const CausalLM& model, const Tokenizer* tokenizer);

  // Generates after `prompt`. `cache` may already hold a prefix of `prompt` (its first
  // cache.length() tokens, e.g. the previous turns of a chat); only the rest is computed.
  // On return the cache holds the prompt and every generated token but the last.
  GenerationResult generate(std::span<const int32_t> prompt, LatentCache& cache,
                            const GenerationConfig& config, const TokenCallback& on_token = {}) const;

  // Several prompts at once, sharing every forward pass; each result is what generate() gives
  // for that prompt alone with the same config (and seed).
  std::vector<GenerationResult> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                               const GenerationConfig& config,
                                               int64_t context) const;

 private:
  const CausalLM& model_;
  const Tokenizer* tokenizer_;
};

}  // namespace dsv3
