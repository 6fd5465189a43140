// DeepseekV3ForCausalLM: DeepseekV3Model plus the lm_head; logits, and the shifted next-token
// cross-entropy when labels are given.
//
//   auto lm = dsv3::api::CausalLM::from_pretrained(dir);
//   dsv3::api::ForwardInputs inputs;
//   inputs.input_ids = {{0, 5, 17}};
//   inputs.labels = inputs.input_ids;           // model(ids, labels=ids)
//   dsv3::api::ForwardOutputs out = lm.forward(inputs);
//   // out.logits [1][3][vocab_size], *out.loss
#pragma once

#include <optional>
#include <string>

#include "api/forward.h"
#include "api/model.h"
#include "model/model.h"

namespace dsv3::api {

class CausalLM {
 public:
  static CausalLM from_pretrained(const std::string& dir, std::optional<Config> config = {});
  explicit CausalLM(Model model);

  const Config& config() const { return model_.config(); }
  const Model& model() const { return model_; }  // the base model (`model.model`)

  // logits [batch][kept][vocab_size] for the positions logits_to_keep keeps; loss when labels
  // are given (which needs the logits of every position).
  ForwardOutputs forward(const ForwardInputs& inputs) const;

  // The engine's causal LM, for dsv3::Generator (generate, chat; see api/generation.h).
  const dsv3::CausalLM& engine() const { return engine_; }

 private:
  Model model_;
  dsv3::CausalLM engine_;
};

}  // namespace dsv3::api
