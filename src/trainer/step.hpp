// One training step (forward, mean BCE loss, backward, optimiser update), in two implementations:
//  - autograd: libtorch's autograd over Dlrm::forward and Optimizer::step (every device; the reference);
//  - fused (CUDA builds, a GPU model, fp32/tf32): the backward pass written out (GEMMs through libtorch,
//    the dot interaction and the embedding gather/update as sluice's own kernels, no dense gradient of
//    the tables, MLP parameters and their gradients in one flat buffer each), the whole step captured as
//    a CUDA graph once the batch shape repeats, and replayed with the learning rate read from device
//    memory. Deterministic: no float atomics anywhere in the step.
#pragma once

#include <memory>
#include <string>

#include "trainer/dlrm.hpp"

namespace sluice::train {

class TrainStep {
 public:
  virtual ~TrainStep() = default;
  // One optimiser step at learning rate lr on a batch already on the model's device (flat_ids from
  // Dlrm::flat_ids); `step` counts the steps done before it over the whole run (resumes included): it
  // keys the stochastic rounding of half-precision tables. Returns the batch's mean loss as a 0-dim
  // float tensor on the device; it stays valid until the next call.
  virtual torch::Tensor run(const torch::Tensor& dense, const torch::Tensor& flat_ids, const torch::Tensor& labels,
                            double lr, int64_t step) = 0;
  virtual const char* name() const = 0;  // "autograd", "fused", "fused+graph"
  // Optional: the one-time work of the first step of `batch` rows (libraries loading their kernels,
  // workspaces, the fused step's graph capture) done ahead, without changing the model, so that it can
  // overlap the data pipeline's first batch.
  virtual void warm_up(int64_t batch, torch::ScalarType id_type) {
    (void)batch;
    (void)id_type;
  }
};

// kind: "auto" (fused where it applies, else autograd), "autograd" or "fused" (an error where it does not
// apply: a CPU model, bf16, or a build without the GPU kernels). cuda_graph: capture the fused step.
// Half-precision tables need the fused step (an error otherwise). seed: the run's seed (stochastic
// rounding).
std::unique_ptr<TrainStep> make_train_step(Dlrm& model, Optimizer& opt, const std::string& kind, bool cuda_graph,
                                           uint64_t seed = 0);

// Throws sluice::Error before anything is allocated when half-precision tables cannot be trained with
// these options (they need the fused GPU step): the message says why and what to change.
void check_emb_dtype_usable(EmbDtype dtype, const std::string& device, Precision precision, const std::string& step);

// Whether the fused step can run for this model (and why not, in *why).
bool fused_step_available(const Dlrm& model, std::string* why);

}  // namespace sluice::train
