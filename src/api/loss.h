// The losses of transformers' loss_utils.py, computed in double from float32 logits (transformers
// upcasts logits to float32 first). Labels equal to kIgnoreIndex do not count; a mean over no
// counted label is NaN, as torch gives.
#pragma once

#include <cstdint>
#include <string>

#include "api/forward.h"
#include "model/config.h"

namespace dsv3::api {

inline constexpr int64_t kIgnoreIndex = -100;

// -log softmax(logits)[target] over one row of `classes` logits.
double negative_log_likelihood(const float* logits, int64_t classes, int64_t target);

// ForCausalLMLoss: logits [batch][sequence][vocab] predict labels shifted by one
// (labels[b][t + 1] for position t); mean over the counted tokens of the whole batch.
double causal_lm_loss(const Tensor& logits, const TokenRows& labels);

// The problem type transformers settles on: config.problem_type, or, when unset, regression
// for one label, single-label classification for integer labels, multi-label otherwise.
std::string sequence_problem_type(const Config& config, bool integer_labels);

// ForSequenceClassificationLoss over pooled logits [batch][num_labels] with the classifier
// labels of `inputs` (class_labels or label_values): MSE, cross-entropy or BCE with logits.
double sequence_classification_loss(const Config& config, const Tensor& pooled_logits,
                                    const ForwardInputs& inputs);

}  // namespace dsv3::api
