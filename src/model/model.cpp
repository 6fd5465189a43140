#include "model/model.h"

#include <filesystem>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/decoder_layer.h"
#include "util/error.h"

namespace dsv3 {

std::shared_ptr<Model> Model::from_pretrained(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) throw Error(dir + ": not a directory");
  Config config = Config::from_file((std::filesystem::path(dir) / "config.json").string());
  return std::make_shared<Model>(std::move(config), Checkpoint::open(dir));
}

Model::Model(Config config, Checkpoint checkpoint)
    : config_(std::move(config)), checkpoint_(std::move(checkpoint)), rope_(config_) {
  config_.validate();
  weights_ = ModelWeights::load(checkpoint_, config_);
}

LatentCache Model::new_cache(int64_t capacity) const {
  return LatentCache(config_, capacity > 0 ? capacity : config_.max_position_embeddings);
}

std::vector<float> Model::forward(std::span<const int32_t> ids, LatentCache& cache) const {
  const int64_t tokens = int64_t(ids.size()), width = config_.hidden_size;
  if (tokens == 0) return {};
  cache.reserve_positions(tokens);
  for (int32_t id : ids)
    if (id < 0 || id >= config_.vocab_size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(config_.vocab_size) + ")");

  std::vector<float> hidden(tokens * width);
  for (int64_t t = 0; t < tokens; ++t)
    kernels::dequantize_row(weights_->embed_tokens, ids[t], hidden.data() + t * width);

  std::vector<int64_t> positions(tokens);
  for (int64_t t = 0; t < tokens; ++t) positions[t] = cache.length() + t;
  AttentionInput input{nullptr, tokens, positions.data(), positions.back() + 1};
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer)
    decoder_layer_forward(config_, rope_, weights_->layers[layer], layer, input, cache,
                          hidden.data());
  cache.advance(tokens);

  for (int64_t t = 0; t < tokens; ++t)
    kernels::rms_norm(hidden.data() + t * width, weights_->norm.weight.data(), width,
                      weights_->norm.eps, hidden.data() + t * width);
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

std::vector<float> CausalLM::forward(std::span<const int32_t> ids, LatentCache& cache,
                                     int64_t logits_to_keep) const {
  const int64_t tokens = int64_t(ids.size()), width = config().hidden_size;
  std::vector<float> hidden = model_->forward(ids, cache);
  const int64_t kept = (logits_to_keep <= 0 || logits_to_keep > tokens) ? tokens : logits_to_keep;
  std::vector<float> logits(kept * config().vocab_size);
  kernels::matmul(model_->weights().lm_head, hidden.data() + (tokens - kept) * width, kept,
                  logits.data());
  return logits;
}

}  // namespace dsv3
