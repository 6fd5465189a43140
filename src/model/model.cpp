#include "model/model.h"

#include <algorithm>
#include <filesystem>
#include <span>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/decoder_layer.h"
#include "model/row_ranges.h"
#include "util/error.h"
#include "util/phase_profile.h"
#include "util/scratch.h"

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
  return LatentCache(config_, capacity > 0 ? capacity : config_.max_position_embeddings,
                     cache_element());
}

CacheElement Model::cache_element() const {
  return weights_->layers.empty() ? CacheElement::kF32
                                  : cache_element_for(weights_->layers.front().self_attn);
}

std::vector<float> Model::forward(std::span<const int32_t> ids, LatentCache& cache) const {
  const SequenceInput sequence{ids, &cache};
  return forward_batch(std::span(&sequence, 1));
}

namespace {

int64_t token_count(const SequenceInput& sequence, int64_t width) {
  return sequence.embeddings.empty() ? int64_t(sequence.ids.size())
                                     : int64_t(sequence.embeddings.size()) / width;
}

// Some tokens of a batch as a batch of their own: their entries of every per-token array, each
// token attended in `forms`' form (the whole batch's, attention_forms).
class SubBatch {
 public:
  SubBatch(const TokenBatch& batch, const AttentionMode* forms, std::span<const int64_t> rows) {
    for (const int64_t t : rows) {
      positions_.push_back(batch.positions[t]);
      slots_.push_back(batch.slots[t]);
      caches_.push_back(batch.caches[t]);
      key_masks_.push_back(batch.key_masks ? batch.key_masks[t] : nullptr);
      forms_.push_back(forms[t]);
      rotations_.push_back(batch.rotations[t]);
    }
    batch_ = TokenBatch{int64_t(rows.size()), positions_.data(), slots_.data(),
                        caches_.data(),       batch.sequence_length, AttentionMode::kAuto};
    batch_.sequence_modes = forms_.data();
    batch_.rotations = rotations_.data();
    batch_.key_masks = key_masks_.data();
  }
  const TokenBatch& batch() const { return batch_; }

 private:
  std::vector<int64_t> positions_, slots_;
  std::vector<LatentCache*> caches_;
  std::vector<const uint8_t*> key_masks_;
  std::vector<AttentionMode> forms_;
  std::vector<Rope::Rotation> rotations_;
  TokenBatch batch_;
};

// The rows of a batch's tokens whose hidden states a pass returns (each sequence's last
// rows_kept, all of them when rows_kept <= 0), and the other rows.
void split_rows(std::span<const SequenceInput> sequences, int64_t width, int64_t rows_kept,
                std::vector<int64_t>& kept_rows, std::vector<int64_t>& other_rows) {
  int64_t offset = 0;
  for (const auto& sequence : sequences) {
    const int64_t count = token_count(sequence, width);
    const int64_t kept = rows_kept <= 0 ? count : std::min(count, rows_kept);
    for (int64_t i = 0; i < count; ++i)
      (i < count - kept ? other_rows : kept_rows).push_back(offset + i);
    offset += count;
  }
}

}  // namespace

std::vector<float> Model::forward_batch(std::span<const SequenceInput> sequences,
                                        ForwardTrace* trace, int64_t rows_kept) const {
  const int64_t width = config_.hidden_size;
  int64_t tokens = 0, key_count = 0;
  for (const auto& sequence : sequences) {
    if (!sequence.cache) throw Error("forward: a sequence has no cache");
    if (!sequence.embeddings.empty() &&
        (!sequence.ids.empty() || sequence.embeddings.size() % size_t(width) != 0))
      throw Error("forward: a sequence needs either ids or embeddings of " +
                  std::to_string(width) + " values per token");
    const int64_t count = token_count(sequence, width);
    if (!sequence.positions.empty() && int64_t(sequence.positions.size()) != count)
      throw Error("forward: " + std::to_string(sequence.positions.size()) + " positions for " +
                  std::to_string(count) + " tokens");
    sequence.cache->reserve_positions(count);
    const int64_t cache_end = sequence.cache->length() + count;
    if (!sequence.attention_mask.empty() && int64_t(sequence.attention_mask.size()) != cache_end)
      throw Error("forward: an attention mask of " +
                  std::to_string(sequence.attention_mask.size()) + " flags for " +
                  std::to_string(cache_end) + " cached and new tokens");
    for (int32_t id : sequence.ids)
      if (id < 0 || id >= config_.vocab_size)
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                    std::to_string(config_.vocab_size) + ")");
    tokens += count;
    key_count = std::max(key_count, cache_end);
  }
  for (size_t i = 0; i < sequences.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (sequences[i].cache == sequences[j].cache)
        throw Error("forward: two sequences of one batch share a cache");
  if (tokens == 0) return {};

  // Per token: its cache, slot, rope position and padding mask (kept by the thread: a decode
  // step allocates only the hidden states it returns).
  thread_local std::vector<LatentCache*> caches;
  thread_local std::vector<int64_t> slots, positions;
  thread_local std::vector<const uint8_t*> key_masks;
  thread_local std::vector<AttentionMode> sequence_modes;
  sequence_modes.resize(tokens);
  caches.resize(tokens);
  slots.resize(tokens);
  positions.resize(tokens);
  key_masks.resize(tokens);
  int64_t t = 0, max_position = 0;
  for (const auto& sequence : sequences) {
    for (int64_t j = 0; j < token_count(sequence, width); ++j, ++t) {
      caches[t] = sequence.cache;
      slots[t] = sequence.cache->length() + j;
      positions[t] = sequence.positions.empty() ? slots[t] : sequence.positions[j];
      if (positions[t] < 0) throw Error("forward: negative position id");
      max_position = std::max(max_position, positions[t]);
      key_masks[t] = sequence.attention_mask.empty() ? nullptr : sequence.attention_mask.data();
      sequence_modes[t] = sequence.attention_mode;
    }
  }
  TokenBatch batch{tokens,       positions.data(),  slots.data(),
                   caches.data(), max_position + 1, attention_mode_};
  batch.key_masks = key_masks.data();
  batch.sequence_modes = sequence_modes.data();
  profile::Phase embed_phase("embed");  // the tokens' rotations and embeddings
  // Each token's rotation, for every layer (qk_rope_head_dim / 2 cosines and sines, in double).
  // (The pool's threads must not name the thread_local: they would see their own.)
  thread_local std::vector<Rope::Rotation> thread_rotations;
  thread_rotations.resize(tokens);
  Rope::Rotation* rotations = thread_rotations.data();
  const int64_t* token_positions = positions.data();
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      rope_.rotation(token_positions[i], max_position + 1, rotations[i]);
  });
  batch.rotations = rotations;
  batch.routing_log = routing_log_;

  // The hidden states in a buffer kept by the thread (a fresh 2 MB vector per 512-token pass
  // cost 1.1 ms of page faults and zeroing); the returned rows are copied out at the end.
  thread_local std::vector<float> thread_hidden, thread_kept_hidden, thread_other_hidden;
  float* hidden = grow_scratch(thread_hidden, tokens * width);
  // Each token's id (-1: given as an embedding), for the embedding rows read in parallel.
  thread_local std::vector<int32_t> thread_token_ids;
  int32_t* token_ids = grow_scratch(thread_token_ids, tokens);
  t = 0;
  for (const auto& sequence : sequences) {
    if (!sequence.embeddings.empty()) {
      std::copy(sequence.embeddings.begin(), sequence.embeddings.end(), hidden + t * width);
      std::fill_n(token_ids + t, token_count(sequence, width), -1);
      t += token_count(sequence, width);
    }
    for (int32_t id : sequence.ids) token_ids[t++] = id;
  }
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      if (token_ids[i] >= 0)
        kernels::dequantize_row(weights_->embed_tokens, token_ids[i], hidden + i * width);
  });

  embed_phase.stop();
  const bool record_hidden = trace && trace->record_hidden_states;
  const bool record_attentions = trace && trace->record_attentions;
  if (trace) {
    trace->hidden_states.clear();
    trace->attentions.clear();
    trace->key_count = key_count;
  }
  auto record = [&](const float* rows, int64_t n) {
    trace->hidden_states.emplace_back(rows, rows + n * width);
  };
  if (record_hidden) record(hidden, tokens);

  // The tokens whose hidden states are returned (rows_kept), and the others. The last layer
  // runs for the kept ones alone, the others only writing their latents into the caches (as
  // llama.cpp's and vLLM's last layers skip the rows no logits are taken of): a 512-token
  // prompt's last layer is a tenth of the bench model's prefill. Every product gives a token the
  // bits it gets in any batch and the kept tokens keep the whole batch's attention forms, so
  // their results do not change. Not with a trace or a routing log, which see every token.
  std::vector<int64_t> kept_rows, other_rows;
  split_rows(sequences, width, rows_kept, kept_rows, other_rows);
  const bool last_layer_kept_only = !other_rows.empty() && !record_hidden && !record_attentions &&
                                    routing_log_ == nullptr && config_.num_hidden_layers > 0;
  // Rows of `hidden` [rows][width] with their tokens' states.
  int64_t rows = tokens;
  auto gather = [&](std::span<const int64_t> picked, std::vector<float>& into) {
    float* gathered = grow_scratch(into, int64_t(picked.size()) * width);
    for (size_t i = 0; i < picked.size(); ++i)
      std::copy_n(hidden + picked[i] * width, width, gathered + int64_t(i) * width);
    return gathered;
  };
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    if (record_attentions) {
      auto& weights =
          trace->attentions.emplace_back(tokens * config_.num_attention_heads * key_count);
      batch.attention_weights = weights.data();
      batch.attention_key_count = key_count;
    }
    const DecoderLayerWeights& layer_weights = weights_->layers[layer];
    if (last_layer_kept_only && layer + 1 == config_.num_hidden_layers) {
      std::vector<AttentionMode> forms(tokens);
      attention_forms(config_, batch, forms.data());
      const SubBatch others(batch, forms.data(), other_rows), kept(batch, forms.data(), kept_rows);
      decoder_layer_write_cache(config_, rope_, layer_weights, layer, others.batch(),
                                gather(other_rows, thread_other_hidden));
      hidden = gather(kept_rows, thread_kept_hidden);
      rows = int64_t(kept_rows.size());
      decoder_layer_forward(config_, rope_, layer_weights, layer, kept.batch(), hidden);
      break;
    }
    decoder_layer_forward(config_, rope_, layer_weights, layer, batch, hidden);
    // The last layer's output is recorded after the final norm, as transformers does.
    if (record_hidden && layer + 1 < config_.num_hidden_layers) record(hidden, tokens);
  }
  for (const auto& sequence : sequences) sequence.cache->advance(token_count(sequence, width));
  if (rows != int64_t(kept_rows.size())) {
    hidden = gather(kept_rows, thread_kept_hidden);
    rows = int64_t(kept_rows.size());
  }

  {
    profile::Phase phase("norm+residual");
    for_row_ranges(rows, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row)
        kernels::rms_norm(hidden + row * width, weights_->norm.weight.data(), width,
                          weights_->norm.eps, hidden + row * width);
    });
  }
  if (record_hidden) record(hidden, rows);
  return std::vector<float>(hidden, hidden + rows * width);
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
  profile::Phase phase("lm_head");
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
  // The kept rows of every sequence, then one lm_head product over all of them.
  const std::vector<float> hidden = model_->forward_batch(sequences, nullptr, logits_to_keep);
  return logits_of(hidden.data(), int64_t(hidden.size()) / width);
}

}  // namespace dsv3
