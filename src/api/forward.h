// The inputs and outputs of a forward pass, named and shaped as the keyword arguments and the
// output fields of transformers' DeepseekV3Model / DeepseekV3ForCausalLM /
// DeepseekV3ForSequenceClassification. Batches are [batch][sequence]; every row of a batch has
// the same length (pad, and say which tokens are padding with attention_mask).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "api/cache.h"
#include "api/tensor.h"

namespace dsv3::api {

using TokenRows = std::vector<std::vector<int32_t>>;  // [batch][sequence]

// logits_to_keep: an int (the last `count` positions; 0 = all) or a list of positions.
struct LogitsToKeep {
  int64_t count = 0;
  std::vector<int64_t> indices;  // when not empty: these positions (negative counts from the end)

  LogitsToKeep(int64_t last = 0) : count(last) {}  // NOLINT: an int converts, as in Python
  LogitsToKeep(std::vector<int64_t> positions) : indices(std::move(positions)) {}  // NOLINT
};

struct ForwardInputs {
  TokenRows input_ids;   // [batch][sequence]; or instead:
  Tensor inputs_embeds;  // [batch][sequence][hidden_size]
  // [batch][past + sequence] of 1 (attend) and 0 (padding); empty: all 1. Padded tokens are
  // still computed (their keys are never attended to).
  TokenRows attention_mask;
  // [batch][sequence] rope positions; empty: cache_position (so left padding shifts positions,
  // as in transformers).
  std::vector<std::vector<int64_t>> position_ids;
  // [sequence] the cache slots of the new tokens: past, past + 1, ... (a start below the cached
  // length rewinds the cache to it); empty: from the cached length.
  std::vector<int64_t> cache_position;
  std::shared_ptr<Cache> past_key_values;  // null: start from nothing
  std::optional<bool> use_cache;           // unset: config.use_cache
  LogitsToKeep logits_to_keep = 0;         // CausalLM
  bool output_hidden_states = false;
  bool output_attentions = false;

  // CausalLM: [batch][sequence] token ids, shifted inside (labels = input_ids is next-token
  // prediction); -100 is ignored.
  TokenRows labels;
  // SequenceClassifier: class ids [batch] (an integer tensor: single-label classification,
  // -100 ignored), or label_values [batch][num_labels] (a float tensor: regression targets or
  // multi-label 0/1 targets; [batch] or [batch][1] for regression with one label).
  std::vector<int64_t> class_labels;
  Tensor label_values;
};

struct ForwardOutputs {
  Tensor last_hidden_state;  // Model: [batch][sequence][hidden_size], after the final norm
  // CausalLM: [batch][kept positions][vocab_size]; SequenceClassifier: [batch][num_labels].
  Tensor logits;
  std::optional<double> loss;  // when labels were given
  // output_hidden_states: num_hidden_layers + 1 tensors [batch][sequence][hidden_size]: the
  // embeddings, then each layer's output, the last one after the final norm.
  std::vector<Tensor> hidden_states;
  // output_attentions: per layer [batch][heads][sequence][past + sequence] softmax weights.
  std::vector<Tensor> attentions;
  std::shared_ptr<Cache> past_key_values;  // when a cache was given or use_cache
};

}  // namespace dsv3::api
