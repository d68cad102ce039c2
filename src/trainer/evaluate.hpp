// Evaluation of the model on the test split (internal: includes libtorch).
#pragma once

#include "sluice/trainer/metrics.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"

namespace sluice::train::detail {

struct Evaluation {
  BinaryMetrics m;
  bool interrupted = false;  // TrainOptions::stop fired (or the test stream was interrupted)
};

// AUC, log loss and accuracy of the model over the whole test split (its stream opened from row 0).
Evaluation evaluate(const Dlrm& model, const StreamFactory& streams, const TrainOptions& o);

}  // namespace sluice::train::detail
