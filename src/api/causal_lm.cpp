#include "api/causal_lm.h"

#include <memory>

#include "api/loss.h"
#include "util/error.h"

namespace dsv3::api {

namespace {

// The positions logits_to_keep selects out of `sequence`.
std::vector<int64_t> kept_positions(const LogitsToKeep& keep, int64_t sequence) {
  std::vector<int64_t> positions;
  if (keep.indices.empty()) {
    if (keep.count < 0) throw Error("logits_to_keep must not be negative");
    const int64_t count = (keep.count == 0 || keep.count > sequence) ? sequence : keep.count;
    for (int64_t t = sequence - count; t < sequence; ++t) positions.push_back(t);
    return positions;
  }
  for (int64_t index : keep.indices) {
    const int64_t t = index < 0 ? index + sequence : index;
    if (t < 0 || t >= sequence)
      throw Error("logits_to_keep: position " + std::to_string(index) + " outside a sequence of " +
                  std::to_string(sequence));
    positions.push_back(t);
  }
  return positions;
}

}  // namespace

CausalLM CausalLM::from_pretrained(const std::string& dir, std::optional<Config> config) {
  return CausalLM(Model::from_pretrained(dir, std::move(config)));
}

CausalLM::CausalLM(Model model)
    : model_(std::move(model)),
      // The engine's CausalLM wants a mutable model handle; it never changes it.
      engine_(std::const_pointer_cast<dsv3::Model>(model_.shared_engine())) {}

ForwardOutputs CausalLM::forward(const ForwardInputs& inputs) const {
  ForwardOutputs outputs = model_.forward(inputs);
  const Tensor& hidden = outputs.last_hidden_state;
  const int64_t batch = hidden.size(0), sequence = hidden.size(1), width = hidden.size(2);
  const std::vector<int64_t> kept = kept_positions(inputs.logits_to_keep, sequence);

  std::vector<float> kept_hidden;
  kept_hidden.reserve(size_t(batch) * kept.size() * size_t(width));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t : kept)
      kept_hidden.insert(kept_hidden.end(), hidden.at({b, t}), hidden.at({b, t}) + width);
  outputs.logits = Tensor({batch, int64_t(kept.size()), config().vocab_size},
                          engine_.logits_of(kept_hidden.data(), batch * int64_t(kept.size())));

  if (!inputs.labels.empty()) {
    bool all_in_order = int64_t(kept.size()) == sequence;
    for (size_t i = 0; all_in_order && i < kept.size(); ++i) all_in_order = kept[i] == int64_t(i);
    if (!all_in_order) throw Error("labels need the logits of every position (logits_to_keep 0)");
    outputs.loss = causal_lm_loss(outputs.logits, inputs.labels);
  }
  return outputs;
}

}  // namespace dsv3::api
