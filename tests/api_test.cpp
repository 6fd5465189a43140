// The library API (src/api) on small random checkpoints: padded batches equal unpadded
// sequences, the cache, inputs_embeds, logits_to_keep, hidden states, attention weights,
// losses, the sequence classifier's pooling and problem types, and clear errors.
// (Numbers against the Python reference: tests/hf_api_test.sh.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "api/dsv3.h"
#include "io/random_checkpoint.h"
#include "kernels/activation_precision.h"
#include "kernels/matmul.h"
#include "model/attention.h"

namespace dsv3::api {
namespace {

std::string make_checkpoint(bool classifier, int64_t num_labels = 3,
                            const std::string& dtype = "f32") {
  const std::string dir = ::testing::TempDir() + "dsv3-api-test-" + (classifier ? "cls" : "lm") +
                          std::to_string(num_labels) + (dtype == "f32" ? "" : "-" + dtype);
  if (!std::filesystem::exists(dir + "/config.json")) {
    RandomCheckpointOptions options;
    options.seed = 5;
    options.dtype = dtype;
    options.sequence_classification = classifier;
    Config config = preset_config("tiny-smallvocab");
    config.num_labels = num_labels;
    write_random_checkpoint(dir, config, options);
  }
  return dir;
}

const CausalLM& lm() {
  static const CausalLM model = CausalLM::from_pretrained(make_checkpoint(false));
  return model;
}

// max |a - b| over the rows a[b_a][t_a + i], b[b_b][t_b + i], i < count, of two 3-D tensors.
float max_row_diff(const Tensor& a, int64_t batch_a, int64_t t_a, const Tensor& b, int64_t batch_b,
                   int64_t t_b, int64_t count) {
  const int64_t width = a.size(2);
  float diff = 0.0f;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t j = 0; j < width; ++j)
      diff = std::max(diff, std::fabs(a.at({batch_a, t_a + i})[j] - b.at({batch_b, t_b + i})[j]));
  return diff;
}

ForwardOutputs run(const TokenRows& ids, const TokenRows& mask = {},
                   std::vector<std::vector<int64_t>> positions = {}) {
  ForwardInputs inputs;
  inputs.input_ids = ids;
  inputs.attention_mask = mask;
  inputs.position_ids = std::move(positions);
  return lm().forward(inputs);
}

TEST(Api, PaddedBatchEqualsUnpaddedSequences) {
  const std::vector<int32_t> first = {0, 5, 17, 100}, second = {0, 7, 9};
  const Tensor alone_first = run({first}).logits, alone_second = run({second}).logits;
  // Row 0 left-padded (pad id 1), row 1 right-padded.
  const TokenRows ids = {{1, 1, 0, 5, 17, 100}, {0, 7, 9, 1, 1, 1}};
  const TokenRows mask = {{0, 0, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0}};
  const Tensor padded = run(ids, mask).logits;
  float scale = 0.0f;  // tolerances relative to the largest logit, as the parity test
  for (float v : alone_first.data) scale = std::max(scale, std::fabs(v));
  // Left padding shifts the positions (cache_position); RoPE is relative, so only rounding differs.
  EXPECT_LE(max_row_diff(padded, 0, 2, alone_first, 0, 0, 4), 1e-4f * scale);
  EXPECT_LE(max_row_diff(padded, 1, 0, alone_second, 0, 0, 3), 1e-4f * scale);
  // With position_ids counting from the first real token, the same positions as alone.
  const Tensor positioned = run(ids, mask, {{0, 0, 0, 1, 2, 3}, {0, 1, 2, 3, 4, 5}}).logits;
  EXPECT_LE(max_row_diff(positioned, 0, 2, alone_first, 0, 0, 4), 1e-5f * scale);
}

TEST(Api, CacheContinuesAndGrows) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 80; ++i) ids.push_back((i * 37 + 11) % 512);  // past the initial 64 slots
  const Tensor whole = run({ids}).logits;

  ForwardInputs first;
  first.input_ids = {std::vector<int32_t>(ids.begin(), ids.begin() + 50)};
  first.use_cache = true;
  const ForwardOutputs head = lm().forward(first);
  ASSERT_TRUE(head.past_key_values);
  EXPECT_EQ(head.past_key_values->get_seq_length(), 50);
  ForwardInputs rest;
  rest.input_ids = {std::vector<int32_t>(ids.begin() + 50, ids.end())};
  rest.past_key_values = head.past_key_values;
  const Tensor tail = lm().forward(rest).logits;
  EXPECT_EQ(head.past_key_values->get_seq_length(), 80);
  EXPECT_LE(max_row_diff(whole, 0, 50, tail, 0, 0, 30), 1e-3f);

  // cache_position below the cached length rewinds the cache.
  ForwardInputs again;
  again.input_ids = {std::vector<int32_t>(ids.begin() + 70, ids.end())};
  again.past_key_values = head.past_key_values;
  again.cache_position = {70, 71, 72, 73, 74, 75, 76, 77, 78, 79};
  EXPECT_LE(max_row_diff(whole, 0, 70, lm().forward(again).logits, 0, 0, 10), 1e-3f);
  again.cache_position = {90, 91, 92, 93, 94, 95, 96, 97, 98, 99};
  EXPECT_THROW(lm().forward(again), Error);

  ForwardInputs no_cache;
  no_cache.input_ids = {{0, 1}};
  no_cache.use_cache = false;
  EXPECT_FALSE(lm().forward(no_cache).past_key_values);
}

// A cache the model makes holds its engine's element: bf16 for BF16 weights under bf16
// activations and attention. Grown past its first 64 slots it keeps the rows, so a prompt fed
// in two pieces through it gives the engine's logits over a cache that never grew.
TEST(Api, CacheHoldsTheEnginesElementAndGrows) {
  const kernels::ActivationPrecision saved_activations = kernels::activation_precision();
  const AttentionPrecision saved_attention = attention_precision();
  kernels::set_activation_precision(kernels::ActivationPrecision::kBf16);
  set_attention_precision(AttentionPrecision::kBf16);
  const CausalLM model = CausalLM::from_pretrained(make_checkpoint(false, 3, "bf16"));
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 80; ++i) ids.push_back((i * 37 + 11) % 512);
  ForwardInputs first;
  first.input_ids = {std::vector<int32_t>(ids.begin(), ids.begin() + 50)};
  first.use_cache = true;
  const ForwardOutputs head = model.forward(first);
  ASSERT_TRUE(head.past_key_values);
  EXPECT_TRUE(head.past_key_values->sequence(0).holds_bf16());
  ForwardInputs rest;
  rest.input_ids = {std::vector<int32_t>(ids.begin() + 50, ids.end())};
  rest.past_key_values = head.past_key_values;
  const Tensor tail = model.forward(rest).logits;
  EXPECT_TRUE(head.past_key_values->sequence(0).holds_bf16());
  EXPECT_GE(head.past_key_values->sequence(0).capacity(), 80);

  // The engine, the same pieces, one cache of 128 slots.
  const dsv3::CausalLM& engine = model.engine();
  LatentCache cache = engine.new_cache(128);
  ASSERT_TRUE(cache.holds_bf16());
  engine.forward(std::span(ids).first(50), cache, 0);
  const std::vector<float> engine_tail = engine.forward(std::span(ids).subspan(50), cache, 0);
  ASSERT_EQ(int64_t(engine_tail.size()), tail.size(1) * tail.size(2));
  float diff = 0.0f, scale = 0.0f;
  for (size_t i = 0; i < engine_tail.size(); ++i) {
    diff = std::max(diff, std::fabs(engine_tail[i] - tail.data[i]));
    scale = std::max(scale, std::fabs(engine_tail[i]));
  }
  EXPECT_LE(diff, 1e-5f * scale);
  kernels::set_activation_precision(saved_activations);
  set_attention_precision(saved_attention);
}

TEST(Api, InputsEmbedsEqualInputIds) {
  const std::vector<int32_t> ids = {0, 5, 17, 100};
  const int64_t width = lm().config().hidden_size;
  ForwardInputs inputs;
  inputs.inputs_embeds = Tensor({1, int64_t(ids.size()), width});
  for (size_t t = 0; t < ids.size(); ++t)
    kernels::dequantize_row(lm().model().engine().weights().embed_tokens, ids[t],
                            inputs.inputs_embeds.at({0, int64_t(t)}));
  EXPECT_EQ(lm().forward(inputs).logits.data, run({ids}).logits.data);
  inputs.input_ids = {ids};
  EXPECT_THROW(lm().forward(inputs), Error);  // both
}

TEST(Api, LogitsToKeep) {
  const TokenRows ids = {{0, 5, 17, 100, 200}};
  const Tensor all = run(ids).logits;
  ForwardInputs inputs;
  inputs.input_ids = ids;
  inputs.logits_to_keep = 2;
  const Tensor last2 = lm().forward(inputs).logits;
  ASSERT_EQ(last2.shape, (std::vector<int64_t>{1, 2, 512}));
  EXPECT_LE(max_row_diff(all, 0, 3, last2, 0, 0, 2), 0.0f);
  inputs.logits_to_keep = std::vector<int64_t>{0, -1};
  const Tensor picked = lm().forward(inputs).logits;
  EXPECT_LE(max_row_diff(all, 0, 0, picked, 0, 0, 1), 0.0f);
  EXPECT_LE(max_row_diff(all, 0, 4, picked, 0, 1, 1), 0.0f);
  inputs.labels = ids;
  EXPECT_THROW(lm().forward(inputs), Error);  // a loss needs every position
  inputs.logits_to_keep = std::vector<int64_t>{5};
  inputs.labels.clear();
  EXPECT_THROW(lm().forward(inputs), Error);
}

TEST(Api, HiddenStatesAndAttentions) {
  ForwardInputs inputs;
  inputs.input_ids = {{1, 0, 5, 17}, {0, 7, 9, 11}};
  inputs.attention_mask = {{0, 1, 1, 1}, {1, 1, 1, 1}};
  inputs.output_hidden_states = inputs.output_attentions = true;
  const ForwardOutputs out = lm().model().forward(inputs);
  const Config& c = lm().config();
  ASSERT_EQ(int64_t(out.hidden_states.size()), c.num_hidden_layers + 1);
  EXPECT_EQ(out.hidden_states.back().data, out.last_hidden_state.data);  // the final norm's output
  ASSERT_EQ(int64_t(out.attentions.size()), c.num_hidden_layers);
  const Tensor& weights = out.attentions[0];
  ASSERT_EQ(weights.shape, (std::vector<int64_t>{2, c.num_attention_heads, 4, 4}));
  for (int64_t h = 0; h < c.num_attention_heads; ++h) {
    // The left-padding query sees nothing: zeros; the others sum to 1 over visible keys.
    for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(weights.at({0, h, 0})[k], 0.0f);
    for (int64_t q = 1; q < 4; ++q) {
      EXPECT_EQ(weights.at({0, h, q})[0], 0.0f);  // the padded key
      float sum = 0.0f;
      for (int64_t k = 0; k < 4; ++k) sum += weights.at({0, h, q})[k];
      EXPECT_NEAR(sum, 1.0f, 1e-5f);
      for (int64_t k = q + 1; k < 4; ++k) EXPECT_EQ(weights.at({0, h, q})[k], 0.0f);  // causal
    }
  }
}

TEST(Api, CausalLossIgnoresMinus100) {
  ForwardInputs inputs;
  inputs.input_ids = {{0, 5, 17, 100}};
  inputs.labels = {{-100, 5, -100, 100}};
  const ForwardOutputs out = lm().forward(inputs);
  const double expected = (negative_log_likelihood(out.logits.at({0, 0}), 512, 5) +
                           negative_log_likelihood(out.logits.at({0, 2}), 512, 100)) /
                          2.0;
  ASSERT_TRUE(out.loss);
  EXPECT_NEAR(*out.loss, expected, 1e-9);
  inputs.labels = {{0, -100, -100, -100}};
  EXPECT_TRUE(std::isnan(*lm().forward(inputs).loss));  // nothing counted, as torch
  inputs.labels = {{0, 512, 1, 1}};
  EXPECT_THROW(lm().forward(inputs), Error);
}

TEST(Api, SequenceClassifierPoolsTheLastNonPadToken) {
  const SequenceClassifier classifier = SequenceClassifier::from_pretrained(make_checkpoint(true));
  ASSERT_EQ(classifier.config().pad_token_id, 1);  // make-tiny sets it for classifiers
  ForwardInputs inputs;
  inputs.input_ids = {{1, 1, 0, 5}, {0, 7, 1, 1}, {1, 1, 1, 1}};
  EXPECT_EQ(classifier.pooled_positions(inputs, 3, 4), (std::vector<int64_t>{3, 1, 0}));
  inputs.input_ids = {{0, 5}};
  const Tensor alone = classifier.forward(inputs).logits;
  inputs.input_ids = {{1, 1, 0, 5}, {0, 5, 1, 1}};
  inputs.attention_mask = {{0, 0, 1, 1}, {1, 1, 0, 0}};
  const Tensor padded = classifier.forward(inputs).logits;
  ASSERT_EQ(padded.shape, (std::vector<int64_t>{2, 3}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 3; ++i) EXPECT_NEAR(padded.at({b})[i], alone.data[i], 1e-4f);

  Config no_pad = classifier.config();
  no_pad.pad_token_id.reset();
  const auto unpadded = SequenceClassifier::from_pretrained(make_checkpoint(true), no_pad);
  EXPECT_THROW(unpadded.forward(inputs), Error);  // batches need a pad token
  EXPECT_THROW(SequenceClassifier::from_pretrained(make_checkpoint(false)), Error);  // no score
}

TEST(Api, ClassificationProblemTypes) {
  Config config = preset_config("tiny-smallvocab");
  config.num_labels = 3;
  EXPECT_EQ(sequence_problem_type(config, true), "single_label_classification");
  EXPECT_EQ(sequence_problem_type(config, false), "multi_label_classification");
  config.num_labels = 1;
  EXPECT_EQ(sequence_problem_type(config, true), "regression");
  config.problem_type = "multi_label_classification";
  EXPECT_EQ(sequence_problem_type(config, true), "multi_label_classification");

  config = preset_config("tiny-smallvocab");
  config.num_labels = 2;
  const Tensor logits({2, 2}, {1.0f, -1.0f, 0.5f, 2.0f});
  ForwardInputs inputs;
  inputs.class_labels = {0, -100};
  EXPECT_NEAR(sequence_classification_loss(config, logits, inputs), std::log1p(std::exp(-2.0)),
              1e-9);
  inputs.class_labels.clear();
  inputs.label_values = Tensor({2, 2}, {1.0f, 0.0f, 0.0f, 1.0f});
  const auto bce = [](double x, double y) {
    return std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::fabs(x)));
  };
  EXPECT_NEAR(sequence_classification_loss(config, logits, inputs),
              (bce(1, 1) + bce(-1, 0) + bce(0.5, 0) + bce(2, 1)) / 4.0, 1e-7);
  config.problem_type = "regression";
  EXPECT_NEAR(sequence_classification_loss(config, logits, inputs), (0 + 1 + 0.25 + 1) / 4.0, 1e-7);
  config.problem_type = "single_label_classification";
  EXPECT_THROW(sequence_classification_loss(config, logits, inputs), Error);  // needs classes
  config.num_labels = 1;
  config.problem_type = "";
  const Tensor one({2, 1}, {0.5f, 2.0f});
  inputs.label_values = Tensor({2}, {1.0f, 1.0f});  // squeezed regression targets
  EXPECT_NEAR(sequence_classification_loss(config, one, inputs), (0.25 + 1.0) / 2.0, 1e-7);
}

TEST(Api, ConfigLabels) {
  nlohmann::json json = preset_config("tiny-smallvocab").to_json();
  json["id2label"] = {{"0", "NEGATIVE"}, {"1", "NEUTRAL"}, {"2", "POSITIVE"}};
  const Config config = Config::from_json(json);
  EXPECT_EQ(config.num_labels, 3);
  EXPECT_EQ(config.label_name(2), "POSITIVE");
  EXPECT_EQ(Config::from_json(config.to_json()).id2label, config.id2label);
  json["id2label"] = {{"0", "A"}, {"2", "B"}};
  EXPECT_THROW(Config::from_json(json), Error);
  json["id2label"] = {{"0", "A"}, {"1", "B"}};
  json["num_labels"] = 3;
  EXPECT_THROW(Config::from_json(json), Error);
}

TEST(Api, BadInputsAreErrors) {
  ForwardInputs inputs;
  EXPECT_THROW(lm().forward(inputs), Error);  // nothing
  inputs.input_ids = {{0, 1, 2}, {0, 1}};
  EXPECT_THROW(lm().forward(inputs), Error);  // ragged
  inputs.input_ids = {{0, 1, 2}};
  inputs.attention_mask = {{1, 2, 1}};
  EXPECT_THROW(lm().forward(inputs), Error);  // not 0/1
  inputs.attention_mask = {{1, 1}};
  EXPECT_THROW(lm().forward(inputs), Error);  // wrong length
  inputs.attention_mask.clear();
  inputs.position_ids = {{0, 1}};
  EXPECT_THROW(lm().forward(inputs), Error);
  inputs.position_ids.clear();
  inputs.past_key_values = std::make_shared<Cache>(lm().config(), 2);
  EXPECT_THROW(lm().forward(inputs), Error);  // batch of 1, cache of 2
  EXPECT_THROW(Tensor({2, 2}, {1.0f}), Error);
  EXPECT_THROW(Tensor({2, 2}).at({2}), Error);
}

}  // namespace
}  // namespace dsv3::api
