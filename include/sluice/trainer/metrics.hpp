// Evaluation metrics of a binary classifier, computed exactly on the host in double precision.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::train {

// Exact ROC AUC (the Mann-Whitney U statistic): scores sorted ascending, tied scores share their average
// rank. Any monotone transform of the scores (logits or probabilities) gives the same value as long as it
// keeps the ties. Returns NaN when there are no positives or no negatives. labels are 0 or 1.
double exact_auc(const float* scores, const float* labels, size_t n);

struct BinaryMetrics {
  double auc = 0;
  double logloss = 0;   // mean binary cross-entropy of sigmoid(logit)
  double accuracy = 0;  // fraction with (sigmoid(logit) > 0.5) == label
  int64_t rows = 0;
};

// Metrics from logits (the pre-sigmoid outputs): log loss is computed stably as softplus(z) - y*z.
BinaryMetrics metrics_from_logits(const float* logits, const float* labels, size_t n);

}  // namespace sluice::train
