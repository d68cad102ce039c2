// Exact AUC, log loss and accuracy (no libtorch here).
#include "sluice/trainer/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace sluice::train {

double exact_auc(const float* scores, const float* labels, size_t n) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  // NaN scores would break the strict weak ordering: they sort as the lowest scores.
  auto key = [&](uint32_t i) {
    float s = scores[i];
    return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s;
  };
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return key(a) < key(b); });
  double pos = 0, rank_sum_pos = 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    const float s = key(order[i]);
    while (j < n && key(order[j]) == s) ++j;
    // Ranks i+1 .. j (1-based) are tied: each gets their average.
    const double avg_rank = 0.5 * (static_cast<double>(i + 1) + static_cast<double>(j));
    double pos_in_group = 0;
    for (size_t k = i; k < j; ++k) pos_in_group += labels[order[k]] > 0.5f ? 1.0 : 0.0;
    pos += pos_in_group;
    rank_sum_pos += pos_in_group * avg_rank;
    i = j;
  }
  const double neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum_pos - pos * (pos + 1) / 2) / (pos * neg);
}

BinaryMetrics metrics_from_logits(const float* logits, const float* labels, size_t n) {
  BinaryMetrics m;
  m.rows = static_cast<int64_t>(n);
  if (n == 0) {
    m.auc = m.logloss = m.accuracy = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  double loss = 0;
  int64_t correct = 0;
  for (size_t i = 0; i < n; ++i) {
    const double z = logits[i];
    const double y = labels[i] > 0.5f ? 1.0 : 0.0;
    // softplus(z) = log(1 + e^z), stable for large |z|.
    const double sp = z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
    loss += sp - y * z;
    const bool predicted = z > 0;  // sigmoid(z) > 0.5
    correct += predicted == (y > 0.5) ? 1 : 0;
  }
  m.logloss = loss / static_cast<double>(n);
  m.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  m.auc = exact_auc(logits, labels, n);
  return m;
}

}  // namespace sluice::train
