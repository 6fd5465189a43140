// DeepseekV3ForSequenceClassification: DeepseekV3Model plus a `score` head (no bias) read at the
// last token that is not padding: the last token whose id differs from config.pad_token_id
// (left or right padding alike), or the last token when pad_token_id is unset (then batches
// must hold one sequence) or when inputs_embeds are given. Loss per config.problem_type.
//
//   auto classifier = dsv3::api::SequenceClassifier::from_pretrained(dir);
//   dsv3::api::ForwardInputs inputs;
//   inputs.input_ids = {{0, 5, 17}};
//   inputs.class_labels = {1};
//   auto out = classifier.forward(inputs);  // out.logits [1][num_labels], *out.loss
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/forward.h"
#include "api/model.h"

namespace dsv3::api {

class SequenceClassifier {
 public:
  static SequenceClassifier from_pretrained(const std::string& dir,
                                            std::optional<Config> config = {});
  explicit SequenceClassifier(Model model);

  const Config& config() const { return model_.config(); }
  const Model& model() const { return model_; }
  int64_t num_labels() const { return config().num_labels; }

  // logits [batch][num_labels] at each row's pooled token; loss with class_labels or
  // label_values (MSE, cross-entropy or BCE with logits, see api/loss.h).
  ForwardOutputs forward(const ForwardInputs& inputs) const;

  // The pooled position of each row (the rule above).
  std::vector<int64_t> pooled_positions(const ForwardInputs& inputs, int64_t batch,
                                        int64_t sequence) const;

 private:
  Model model_;
};

}  // namespace dsv3::api
