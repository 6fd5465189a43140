#include "api/sequence_classifier.h"

#include "api/loss.h"
#include "kernels/matmul.h"
#include "util/error.h"

namespace dsv3::api {

SequenceClassifier SequenceClassifier::from_pretrained(const std::string& dir,
                                                       std::optional<Config> config) {
  return SequenceClassifier(Model::from_pretrained(dir, std::move(config)));
}

SequenceClassifier::SequenceClassifier(Model model) : model_(std::move(model)) {
  if (model_.engine().weights().score.empty())
    throw Error(model_.engine().checkpoint().dir() +
                ": tensor score.weight is missing (not a DeepseekV3ForSequenceClassification "
                "checkpoint)");
}

std::vector<int64_t> SequenceClassifier::pooled_positions(const ForwardInputs& inputs,
                                                          int64_t batch, int64_t sequence) const {
  const auto& pad = config().pad_token_id;
  if (!pad && batch != 1)
    throw Error(
        "Cannot handle batch sizes > 1 if no padding token is defined (config.pad_token_id)");
  std::vector<int64_t> positions(size_t(batch), sequence - 1);
  if (!pad || inputs.input_ids.empty()) return positions;  // inputs_embeds: padding is not visible
  for (int64_t b = 0; b < batch; ++b) {
    // argmax of t * (id != pad): the last non-pad token, 0 when every token is padding.
    positions[b] = 0;
    for (int64_t t = 0; t < sequence; ++t)
      if (inputs.input_ids[b][t] != *pad) positions[b] = t;
  }
  return positions;
}

ForwardOutputs SequenceClassifier::forward(const ForwardInputs& inputs) const {
  ForwardOutputs outputs = model_.forward(inputs);
  const Tensor& hidden = outputs.last_hidden_state;
  const int64_t batch = hidden.size(0), sequence = hidden.size(1), width = hidden.size(2);
  const std::vector<int64_t> positions = pooled_positions(inputs, batch, sequence);
  std::vector<float> pooled_hidden;
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = hidden.at({b, positions[b]});
    pooled_hidden.insert(pooled_hidden.end(), row, row + width);
  }
  outputs.logits = Tensor({batch, num_labels()});
  kernels::matmul(model_.engine().weights().score, pooled_hidden.data(), batch,
                  outputs.logits.data.data());
  if (!inputs.class_labels.empty() || !inputs.label_values.empty())
    outputs.loss = sequence_classification_loss(config(), outputs.logits, inputs);
  return outputs;
}

}  // namespace dsv3::api
