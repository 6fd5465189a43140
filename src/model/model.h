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
#include "model/attention.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// One sequence of a batched forward pass: new tokens appended to its own cache.
struct SequenceInput {
  std::span<const int32_t> ids;
  LatentCache* cache = nullptr;
  // Rope positions of the new tokens (position_ids); empty: their cache slots.
  std::span<const int64_t> positions = {};
  // Instead of ids: the input embeddings, [tokens][hidden_size] (transformers' inputs_embeds).
  std::span<const float> embeddings = {};
  // Padding (attention_mask): a flag per cache slot [0, cache length + new tokens), 0 = never
  // attended to (by any token); empty: every slot counts.
  std::span<const uint8_t> attention_mask = {};
  // The attention form of these tokens (model/attention.h) where the model's is kAuto; kAuto:
  // the cheaper one. A token's result then does not depend on how its sequence is cut into
  // passes: the server feeds every prompt token in the expanded form, whatever its chunk.
  AttentionMode attention_mode = AttentionMode::kAuto;
};

// Optional outputs of a forward pass (transformers' output_hidden_states, output_attentions).
struct ForwardTrace {
  bool record_hidden_states = false;
  bool record_attentions = false;
  // [num_hidden_layers + 1][tokens * hidden_size]: the embeddings, then each layer's output,
  // the last one after the final norm, as transformers' hidden_states.
  std::vector<std::vector<float>> hidden_states;
  // [num_hidden_layers][tokens * heads * key_count]: each head's softmax weights over the cache
  // slots (0 where a token does not look); key_count is the longest cache after the pass.
  std::vector<std::vector<float>> attentions;
  int64_t key_count = 0;
};

class Model {
 public:
  // Reads DIR/config.json and the safetensors of DIR (memory-mapped, used in place).
  static std::shared_ptr<Model> from_pretrained(const std::string& dir,
                                                const LoadProgress& progress = {});
  Model(Config config, Checkpoint checkpoint, const LoadProgress& progress = {});

  const Config& config() const { return config_; }
  const ModelWeights& weights() const { return *weights_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }

  // Absorbed or expanded MLA (default: whichever is cheaper per sequence and pass).
  void set_attention_mode(AttentionMode mode) { attention_mode_ = mode; }
  // Records or replays every pass's routing (model/moe.h RoutingLog; null: the router decides).
  // For measurements only: the log belongs to the caller and must outlive the passes.
  void set_routing_log(RoutingLog* log) { routing_log_ = log; }

  // A static cache for `capacity` positions (default: max_position_embeddings), of
  // cache_element(): bf16 where the attention runs in bf16 (model/attention.h).
  LatentCache new_cache(int64_t capacity = 0) const;
  CacheElement cache_element() const;

  // Runs `ids` at positions cache.length() ... and appends them to the cache. Returns the
  // last hidden state (after the final norm), [ids.size()][hidden_size].
  std::vector<float> forward(std::span<const int32_t> ids, LatentCache& cache) const;

  // Several sequences at once (their matrix products shared); the hidden states of their new
  // tokens, concatenated in order, [tokens][hidden_size]: of all of them, or of the last
  // `rows_kept` of each sequence when rows_kept > 0 (the last layer then runs for those alone,
  // their results unchanged). `trace` records more (of every token).
  std::vector<float> forward_batch(std::span<const SequenceInput> sequences,
                                   ForwardTrace* trace = nullptr, int64_t rows_kept = 0) const;

 private:
  Config config_;
  Checkpoint checkpoint_;
  std::shared_ptr<ModelWeights> weights_;
  Rope rope_;
  AttentionMode attention_mode_ = AttentionMode::kAuto;
  RoutingLog* routing_log_ = nullptr;
};

class CausalLM {
 public:
  static CausalLM from_pretrained(const std::string& dir);
  explicit CausalLM(std::shared_ptr<Model> model);

  const Model& model() const { return *model_; }
  void set_attention_mode(AttentionMode mode) { model_->set_attention_mode(mode); }
  void set_routing_log(RoutingLog* log) { model_->set_routing_log(log); }
  const Config& config() const { return model_->config(); }
  LatentCache new_cache(int64_t capacity = 0) const { return model_->new_cache(capacity); }

  // Logits of the last `logits_to_keep` tokens (0 = all, as in transformers),
  // [kept][vocab_size].
  std::vector<float> forward(std::span<const int32_t> ids, LatentCache& cache,
                             int64_t logits_to_keep = 0) const;

  // Several sequences at once: the logits of the last `logits_to_keep` tokens of each
  // (0 = all), concatenated, [kept tokens][vocab_size].
  std::vector<float> forward_batch(std::span<const SequenceInput> sequences,
                                   int64_t logits_to_keep = 1) const;

  // The lm_head over final hidden states [rows][hidden_size] -> [rows][vocab_size].
  std::vector<float> logits_of(const float* hidden, int64_t rows) const;

 private:
  std::shared_ptr<Model> model_;
};

}  // namespace dsv3
