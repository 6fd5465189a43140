#include "api/model.h"

#include <filesystem>
#include <span>
#include <string>

#include "util/error.h"

namespace dsv3::api {

namespace {

// The batch and sequence sizes of input_ids or inputs_embeds (exactly one of them).
struct BatchShape {
  int64_t batch = 0, sequence = 0;
};

BatchShape batch_shape(const ForwardInputs& inputs, int64_t hidden_size) {
  const bool have_ids = !inputs.input_ids.empty(), have_embeds = !inputs.inputs_embeds.empty();
  if (have_ids == have_embeds)
    throw Error("forward: pass exactly one of input_ids and inputs_embeds");
  BatchShape shape;
  if (have_ids) {
    shape.batch = int64_t(inputs.input_ids.size());
    shape.sequence = int64_t(inputs.input_ids[0].size());
    for (size_t b = 0; b < inputs.input_ids.size(); ++b)
      if (int64_t(inputs.input_ids[b].size()) != shape.sequence)
        throw Error("forward: input_ids row " + std::to_string(b) + " has " +
                    std::to_string(inputs.input_ids[b].size()) + " tokens, row 0 has " +
                    std::to_string(shape.sequence) + " (pad the rows to one length)");
  } else {
    const auto& dims = inputs.inputs_embeds.shape;
    if (dims.size() != 3 || dims[2] != hidden_size)
      throw Error("forward: inputs_embeds must be [batch][sequence][" +
                  std::to_string(hidden_size) + "]");
    shape.batch = dims[0];
    shape.sequence = dims[1];
  }
  if (shape.batch < 1 || shape.sequence < 1) throw Error("forward: empty input");
  return shape;
}

// cache_position: past, past + 1, ... A start below the cached length rewinds the cache.
int64_t first_cache_position(const ForwardInputs& inputs, Cache& cache, int64_t sequence) {
  const int64_t past = cache.get_seq_length();
  const auto& given = inputs.cache_position;
  if (given.empty()) return past;
  if (int64_t(given.size()) != sequence)
    throw Error("forward: cache_position has " + std::to_string(given.size()) + " entries for " +
                std::to_string(sequence) + " tokens");
  for (size_t i = 1; i < given.size(); ++i)
    if (given[i] != given[0] + int64_t(i))
      throw Error("forward: cache_position must count up by one (entry " + std::to_string(i) + ")");
  if (given[0] < 0 || given[0] > past)
    throw Error("forward: cache_position starts at " + std::to_string(given[0]) + " but " +
                std::to_string(past) + " tokens are cached");
  if (given[0] < past) cache.crop(given[0]);
  return given[0];
}

// attention_mask as one flag per cache slot for each row; empty when nothing is masked.
std::vector<std::vector<uint8_t>> padding_flags(const ForwardInputs& inputs, BatchShape shape,
                                                int64_t past) {
  const auto& mask = inputs.attention_mask;
  if (mask.empty()) return {};
  const int64_t keys = past + shape.sequence;
  if (int64_t(mask.size()) != shape.batch)
    throw Error("forward: attention_mask has " + std::to_string(mask.size()) +
                " rows for a batch of " + std::to_string(shape.batch));
  std::vector<std::vector<uint8_t>> flags(size_t(shape.batch));
  bool any_padding = false;
  for (int64_t b = 0; b < shape.batch; ++b) {
    if (int64_t(mask[b].size()) != keys)
      throw Error("forward: attention_mask row " + std::to_string(b) + " has " +
                  std::to_string(mask[b].size()) + " entries, expected " + std::to_string(keys) +
                  " (cached + new tokens)");
    for (int64_t k = 0; k < keys; ++k) {
      if (mask[b][k] != 0 && mask[b][k] != 1)
        throw Error("forward: attention_mask[" + std::to_string(b) + "][" + std::to_string(k) +
                    "] is " + std::to_string(mask[b][k]) + ", expected 0 or 1");
      flags[b].push_back(uint8_t(mask[b][k]));
      any_padding = any_padding || mask[b][k] == 0;
    }
  }
  if (!any_padding) flags.clear();
  return flags;
}

// [tokens][heads][keys] per layer -> [batch][heads][sequence][keys].
Tensor attention_tensor(const std::vector<float>& weights, BatchShape shape, int64_t heads,
                        int64_t keys) {
  Tensor out({shape.batch, heads, shape.sequence, keys});
  for (int64_t b = 0; b < shape.batch; ++b)
    for (int64_t t = 0; t < shape.sequence; ++t)
      for (int64_t h = 0; h < heads; ++h)
        std::copy_n(weights.data() + ((b * shape.sequence + t) * heads + h) * keys, keys,
                    out.at({b, h, t}));
  return out;
}

}  // namespace

Model Model::from_pretrained(const std::string& dir, std::optional<Config> config) {
  if (!config) return Model(dsv3::Model::from_pretrained(dir));
  if (!std::filesystem::is_directory(dir)) throw Error(dir + ": not a directory");
  return Model(std::make_shared<dsv3::Model>(std::move(*config), Checkpoint::open(dir)));
}

Model::Model(std::shared_ptr<const dsv3::Model> engine) : engine_(std::move(engine)) {
  if (!engine_) throw Error("Model: no engine model");
}

ForwardOutputs Model::forward(const ForwardInputs& inputs) const {
  const Config& c = config();
  const BatchShape shape = batch_shape(inputs, c.hidden_size);

  // past_key_values: the given cache, a new one to return (use_cache), or a scratch one.
  std::shared_ptr<Cache> cache = inputs.past_key_values;
  if (cache && cache->batch_size() != shape.batch)
    throw Error("forward: past_key_values holds " + std::to_string(cache->batch_size()) +
                " sequences, the batch has " + std::to_string(shape.batch));
  const bool return_cache = cache || inputs.use_cache.value_or(c.use_cache);
  if (!cache) cache = std::make_shared<Cache>(c, shape.batch, engine_->cache_element());
  const int64_t past = first_cache_position(inputs, *cache, shape.sequence);
  cache->reserve(past + shape.sequence);

  // position_ids default to cache_position.
  std::vector<std::vector<int64_t>> positions = inputs.position_ids;
  if (positions.empty()) {
    positions.assign(size_t(shape.batch), {});
    for (auto& row : positions)
      for (int64_t t = 0; t < shape.sequence; ++t) row.push_back(past + t);
  }
  if (int64_t(positions.size()) != shape.batch)
    throw Error("forward: position_ids has " + std::to_string(positions.size()) +
                " rows for a batch of " + std::to_string(shape.batch));
  for (size_t b = 0; b < positions.size(); ++b)
    if (int64_t(positions[b].size()) != shape.sequence)
      throw Error("forward: position_ids row " + std::to_string(b) + " has " +
                  std::to_string(positions[b].size()) + " entries for " +
                  std::to_string(shape.sequence) + " tokens");
  const auto flags = padding_flags(inputs, shape, past);

  std::vector<SequenceInput> sequences(size_t(shape.batch));
  const int64_t row_values = shape.sequence * c.hidden_size;
  for (int64_t b = 0; b < shape.batch; ++b) {
    SequenceInput& sequence = sequences[b];
    if (!inputs.input_ids.empty())
      sequence.ids = inputs.input_ids[b];
    else
      sequence.embeddings =
          std::span(inputs.inputs_embeds.data).subspan(b * row_values, row_values);
    sequence.cache = &cache->sequence(b);
    sequence.positions = positions[b];
    if (!flags.empty()) sequence.attention_mask = flags[b];
  }

  ForwardTrace trace;
  trace.record_hidden_states = inputs.output_hidden_states;
  trace.record_attentions = inputs.output_attentions;
  ForwardOutputs outputs;
  outputs.last_hidden_state = Tensor({shape.batch, shape.sequence, c.hidden_size},
                                     engine_->forward_batch(sequences, &trace));
  for (auto& hidden : trace.hidden_states)
    outputs.hidden_states.emplace_back(
        std::vector<int64_t>{shape.batch, shape.sequence, c.hidden_size}, std::move(hidden));
  for (const auto& weights : trace.attentions)
    outputs.attentions.push_back(
        attention_tensor(weights, shape, c.num_attention_heads, trace.key_count));
  if (return_cache) outputs.past_key_values = cache;
  return outputs;
}

}  // namespace dsv3::api
