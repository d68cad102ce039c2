// The optimisers (SGD, Adagrad) and the autograd training step (internal: includes libtorch).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "sluice/trainer/trainer.hpp"

namespace sluice::train {

class Dlrm;  // trainer/dlrm.hpp, which includes this header

class Optimizer {
 public:
  static constexpr double kAdagradEps = 1e-10;  // torch.optim.Adagrad's default

  Optimizer(OptimizerKind kind, const Dlrm& model);
  OptimizerKind kind() const { return kind_; }

  // One step at learning rate lr: MLP parameters from their .grad (cleared afterwards); the embedding rows
  // flat_ids[i] get rows_grad[i] ([B*26, d]).
  //  SGD:      w -= lr * g (duplicate ids accumulate).
  //  Adagrad:  MLPs as torch.optim.Adagrad (s += g*g; w -= lr * g / (sqrt(s) + eps)); embeddings
  //            row-wise: the gradients of duplicate ids are summed first, then per row
  //            s_r += mean_j(g_rj^2); w_r -= lr * g_r / (sqrt(s_r) + eps).
  void step(Dlrm& model, const torch::Tensor& flat_ids, const torch::Tensor& rows_grad, double lr);

  std::vector<torch::Tensor> mlp_state;  // Adagrad: sums of squared gradients, like the parameters
  torch::Tensor emb_state;               // Adagrad: [total_rows] row-wise sums

 private:
  OptimizerKind kind_;
};

// One training step (forward, mean BCE loss, backward, update). Returns the loss, detached, on the device.
torch::Tensor train_step(Dlrm& model, Optimizer& opt, const torch::Tensor& dense,
                         const torch::Tensor& flat_ids, const torch::Tensor& labels, double lr);

}  // namespace sluice::train
