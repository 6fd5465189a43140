#include "model/model.h"

#include <algorithm>
#include <filesystem>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/decoder_layer.h"
#include "util/error.h"

namespace dsv3 {

std::shared_ptr<Model> Model::from_pretrained(const std::string& dir, const LoadProgress& progress) {
  if (!std::filesystem::is_directory(dir)) throw Error(dir + ": not a directory");
  Config config = Config::from_file((std::filesystem::path(dir) / "config.json").string());
  return std::make_shared<Model>(std::move(config), Checkpoint::open(dir), progress);
}

Model::Model(Config config, Checkpoint checkpoint, const LoadProgress& progress)
    : config_(std::move(config)), checkpoint_(std::move(checkpoint)), rope_(config_) {
  config_.validate();
  weights_ = ModelWeights::load(checkpoint_, config_, progress);
}

LatentCache Model::new_cache(int64_t capacity) const {
  return LatentCache(config_, capacity > 0 ? capacity : config_.max_position_embeddings);
}

std::vector<float> Model::forward(std::span<const int32_t> ids, LatentCache& cache) const {
  const SequenceInput sequence{ids, &cache};
  return forward_batch(std::span(&sequence, 1));
}

std::vector<float> Model::forward_batch(std::span<const SequenceInput> sequences) const {
  const int64_t width = config_.hidden_size;
  int64_t tokens = 0;
  for (const auto& sequence : sequences) {
    if (!sequence.cache) throw Error("forward: a sequence has no cache");
    if (!sequence.positions.empty() && sequence.positions.size() != sequence.ids.size())
      throw Error("forward: " + std::to_string(sequence.positions.size()) + " positions for " +
                  std::to_string(sequence.ids.size()) + " tokens");
    sequence.cache->reserve_positions(int64_t(sequence.ids.size()));
    for (int32_t id : sequence.ids)
      if (id < 0 || id >= config_.vocab_size)
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                    std::to_string(config_.vocab_size) + ")");
    tokens += int64_t(sequence.ids.size());
  }
  for (size_t i = 0; i < sequences.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (sequences[i].cache == sequences[j].cache)
        throw Error("forward: two sequences of one batch share a cache");
  if (tokens == 0) return {};

  // Per token: its cache, slot and rope position.
  std::vector<LatentCache*> caches(tokens);
  std::vector<int64_t> slots(tokens), positions(tokens);
  int64_t t = 0, max_position = 0;
  for (const auto& sequence : sequences) {
    for (size_t j = 0; j < sequence.ids.size(); ++j, ++t) {
      caches[t] = sequence.cache;
      slots[t] = sequence.cache->length() + int64_t(j);
      positions[t] = sequence.positions.empty() ? slots[t] : sequence.positions[j];
      if (positions[t] < 0) throw Error("forward: negative position id");
      max_position = std::max(max_position, positions[t]);
    }
  }
  const TokenBatch batch{tokens, positions.data(), slots.data(), caches.data(), max_position + 1};

  std::vector<float> hidden(tokens * width);
  t = 0;
  for (const auto& sequence : sequences)
    for (int32_t id : sequence.ids)
      kernels::dequantize_row(weights_->embed_tokens, id, hidden.data() + (t++) * width);

  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer)
    decoder_layer_forward(config_, rope_, weights_->layers[layer], layer, batch, hidden.data());
  for (const auto& sequence : sequences) sequence.cache->advance(int64_t(sequence.ids.size()));

  for (int64_t row = 0; row < tokens; ++row)
    kernels::rms_norm(hidden.data() + row * width, weights_->norm.weight.data(), width,
                      weights_->norm.eps, hidden.data() + row * width);
  return hidden;
}

CausalLM CausalLM::from_pretrained(const std::string& dir) {
  return CausalLM(Model::from_pretrained(dir));
}

CausalLM::CausalLM(std::shared_ptr<Model> model) : model_(std::move(model)) {
  if (model_->weights().lm_head.empty())
    throw Error(model_->checkpoint().dir() +
                ": tensor lm_head.weight is missing (and tie_word_embeddings is false)");
}

std::vector<float> CausalLM::logits_of(const float* hidden, int64_t rows) const {
  std::vector<float> logits(rows * config().vocab_size);
  kernels::matmul(model_->weights().lm_head, hidden, rows, logits.data());
  return logits;
}

std::vector<float> CausalLM::forward(std::span<const int32_t> ids, LatentCache& cache,
                                     int64_t logits_to_keep) const {
  const SequenceInput sequence{ids, &cache};
  return forward_batch(std::span(&sequence, 1), logits_to_keep);
}

std::vector<float> CausalLM::forward_batch(std::span<const SequenceInput> sequences,
                                           int64_t logits_to_keep) const {
  const int64_t width = config().hidden_size;
  const std::vector<float> hidden = model_->forward_batch(sequences);
  // Gather the kept rows of each sequence, then one lm_head product over all of them.
  std::vector<float> kept_hidden;
  int64_t offset = 0;
  for (const auto& sequence : sequences) {
    const int64_t tokens = int64_t(sequence.ids.size());
    const int64_t kept = (logits_to_keep <= 0 || logits_to_keep > tokens) ? tokens : logits_to_keep;
    kept_hidden.insert(kept_hidden.end(), hidden.begin() + (offset + tokens - kept) * width,
                       hidden.begin() + (offset + tokens) * width);
    offset += tokens;
  }
  return logits_of(kept_hidden.data(), int64_t(kept_hidden.size()) / width);
}

}  // namespace dsv3
