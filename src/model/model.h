// DeepseekV3Model (embeddings, decoder layers, final norm) and DeepseekV3ForCausalLM (plus
// lm_head), loaded from a Hugging Face checkpoint directory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cache/latent_cache.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

class Model {
 public:
  // Reads DIR/config.json and the safetensors of DIR (memory-mapped, used in place).
  static std::shared_ptr<Model> from_pretrained(const std::string& dir);
  Model(Config config, Checkpoint checkpoint);

  const Config& config() const { return config_; }
  const ModelWeights& weights() const { return *weights_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }

  // A static cache for `capacity` positions (default: max_position_embeddings).
  LatentCache new_cache(int64_t capacity = 0) const;

  // Runs `ids` at positions cache.length() ... and appends them to the cache. Returns the
  // last hidden state (after the final norm), [ids.size()][hidden_size].
  std::vector<float> forward(std::span<const int32_t> ids, LatentCache& cache) const;

 private:
  Config config_;
  Checkpoint checkpoint_;
  std::shared_ptr<ModelWeights> weights_;
  Rope rope_;
};

class CausalLM {
 public:
  static CausalLM from_pretrained(const std::string& dir);
  explicit CausalLM(std::shared_ptr<Model> model);

  const Model& model() const { return *model_; }
  const Config& config() const { return model_->config(); }
  LatentCache new_cache(int64_t capacity = 0) const { return model_->new_cache(capacity); }

  // Logits of the last `logits_to_keep` tokens (0 = all, as in transformers),
  // [kept][vocab_size].
  std::vector<float> forward(std::span<const int32_t> ids, LatentCache& cache,
                             int64_t logits_to_keep = 0) const;

 private:
  std::shared_ptr<Model> model_;
};

}  // namespace dsv3
