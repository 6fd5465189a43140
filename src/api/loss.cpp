#include "api/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/error.h"

namespace dsv3::api {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_target(int64_t target, int64_t classes, const std::string& where) {
  if (target != kIgnoreIndex && (target < 0 || target >= classes))
    throw Error(where + " is " + std::to_string(target) + ", outside [0, " +
                std::to_string(classes) + ") and not -100");
}

// Cross-entropy averaged over the rows whose label is not ignored (fixed_cross_entropy).
double mean_cross_entropy(const Tensor& logits, const std::vector<int64_t>& labels,
                          int64_t classes) {
  double sum = 0.0;
  int64_t counted = 0;
  for (size_t row = 0; row < labels.size(); ++row) {
    check_target(labels[row], classes, "class_labels[" + std::to_string(row) + "]");
    if (labels[row] == kIgnoreIndex) continue;
    sum += negative_log_likelihood(logits.data.data() + row * classes, classes, labels[row]);
    ++counted;
  }
  return counted ? sum / double(counted) : kNaN;
}

// The float targets of regression / multi-label, as [batch][columns].
std::vector<double> float_targets(const ForwardInputs& inputs, int64_t batch, int64_t columns,
                                  const std::string& problem_type) {
  std::vector<double> targets;
  if (!inputs.label_values.empty()) {
    const Tensor& values = inputs.label_values;
    // [batch] is accepted for one column (labels.squeeze() in transformers).
    const bool matches = values.numel() == batch * columns &&
                         (values.shape == std::vector<int64_t>{batch, columns} ||
                          (columns == 1 && values.shape == std::vector<int64_t>{batch}));
    if (!matches)
      throw Error(problem_type + ": label_values must be [" + std::to_string(batch) + "][" +
                  std::to_string(columns) + "]");
    targets.assign(values.data.begin(), values.data.end());
  } else {
    if (problem_type == "multi_label_classification")
      throw Error("multi_label_classification needs float label_values [batch][num_labels]");
    if (int64_t(inputs.class_labels.size()) != batch * columns)
      throw Error(problem_type + ": " + std::to_string(inputs.class_labels.size()) +
                  " labels for " + std::to_string(batch * columns) + " values");
    for (int64_t label : inputs.class_labels) targets.push_back(double(label));
  }
  return targets;
}

}  // namespace

double negative_log_likelihood(const float* logits, int64_t classes, int64_t target) {
  double max_logit = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < classes; ++i) max_logit = std::max(max_logit, double(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < classes; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return max_logit + std::log(sum) - double(logits[target]);
}

double causal_lm_loss(const Tensor& logits, const TokenRows& labels) {
  if (logits.shape.size() != 3)
    throw Error("causal_lm_loss: logits must be [batch][sequence][vocab]");
  const int64_t batch = logits.shape[0], sequence = logits.shape[1], vocab = logits.shape[2];
  if (int64_t(labels.size()) != batch)
    throw Error("labels: " + std::to_string(labels.size()) + " rows for a batch of " +
                std::to_string(batch));
  double sum = 0.0;
  int64_t counted = 0;
  for (int64_t b = 0; b < batch; ++b) {
    if (int64_t(labels[b].size()) != sequence)
      throw Error("labels row " + std::to_string(b) + " has " + std::to_string(labels[b].size()) +
                  " entries for " + std::to_string(sequence) + " positions");
    // Position t predicts labels[t + 1]; the last position has nothing to predict.
    for (int64_t t = 0; t + 1 < sequence; ++t) {
      const int64_t target = labels[b][t + 1];
      check_target(target, vocab,
                   "labels[" + std::to_string(b) + "][" + std::to_string(t + 1) + "]");
      if (target == kIgnoreIndex) continue;
      sum += negative_log_likelihood(logits.at({b, t}), vocab, target);
      ++counted;
    }
  }
  return counted ? sum / double(counted) : kNaN;
}

std::string sequence_problem_type(const Config& config, bool integer_labels) {
  if (!config.problem_type.empty()) return config.problem_type;
  if (config.num_labels == 1) return "regression";
  return integer_labels ? "single_label_classification" : "multi_label_classification";
}

double sequence_classification_loss(const Config& config, const Tensor& pooled_logits,
                                    const ForwardInputs& inputs) {
  const bool integer_labels = !inputs.class_labels.empty();
  if (integer_labels == !inputs.label_values.empty())
    throw Error("sequence classification: pass either class_labels or label_values");
  const int64_t batch = pooled_logits.size(0), classes = pooled_logits.size(1);
  const std::string problem_type = sequence_problem_type(config, integer_labels);

  if (problem_type == "single_label_classification") {
    if (!integer_labels)
      throw Error(
          "single_label_classification needs integer class_labels [batch], got label_values");
    if (int64_t(inputs.class_labels.size()) != batch)
      throw Error("class_labels: " + std::to_string(inputs.class_labels.size()) +
                  " labels for a batch of " + std::to_string(batch));
    return mean_cross_entropy(pooled_logits, inputs.class_labels, classes);
  }
  const std::vector<double> targets = float_targets(inputs, batch, classes, problem_type);
  double sum = 0.0;
  for (size_t i = 0; i < targets.size(); ++i) {
    const double x = pooled_logits.data[i], y = targets[i];
    if (problem_type == "regression")
      sum += (x - y) * (x - y);  // MSELoss (squeezed for one label)
    else  // BCEWithLogitsLoss, in its stable form max(x, 0) - x y + log(1 + e^-|x|)
      sum += std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::fabs(x)));
  }
  return sum / double(targets.size());
}

}  // namespace dsv3::api
