// Evaluation of the model on the test split (internal: includes libtorch).
#pragma once

#include "sluice/trainer/metrics.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/sharded.hpp"

namespace sluice::train::detail {

struct Evaluation {
  BinaryMetrics m;
  bool interrupted = false;  // TrainOptions::stop fired (or the test stream was interrupted)
};

// AUC, log loss and accuracy of the model over the whole test split (its stream opened from row 0).
// sharded (several ranks): every rank runs this together; each computes the logits of its share of
// every test batch, and every rank gets the metrics of the whole split.
Evaluation evaluate(const Dlrm& model, const StreamFactory& streams, const TrainOptions& o,
                    const Sharded* sharded = nullptr);

}  // namespace sluice::train::detail
