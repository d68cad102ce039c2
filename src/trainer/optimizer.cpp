// The optimisers and the autograd training step.
#include "trainer/optimizer.hpp"

#include "sluice/source.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/messages.hpp"

namespace sluice::train {

Optimizer::Optimizer(OptimizerKind kind, const Dlrm& model) : kind_(kind) {
  if (kind_ == OptimizerKind::kAdagrad) {
    torch::NoGradGuard no_grad;
    double elems = static_cast<double>(model.total_rows());
    for (const auto& p : model.mlp_params()) elems += static_cast<double>(p.numel());
    const auto state_what = [&] {
      return "allocating the Adagrad state (" + count_text(elems) + " values = " + bytes_text(elems * 4.0) +
             " of float32 on " + model.device().str() + ")";
    };
    require_capacity(state_what, elems * 4.0, model.device());
    oom_guard(
        state_what,
        [&] {
          for (const auto& p : model.mlp_params()) mlp_state.push_back(torch::zeros_like(p));
          emb_state = torch::zeros({model.total_rows()}, model.emb.options().dtype(torch::kFloat32));
        });
  }
}

void Optimizer::step(Dlrm& model, const torch::Tensor& flat_ids, const torch::Tensor& rows_grad, double lr) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params = model.mlp_params();
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (auto& p : params) {
    if (!p.grad().defined()) throw Error("internal: a parameter got no gradient");
    grads.push_back(p.grad());
  }
  if (kind_ == OptimizerKind::kSgd) {
    at::_foreach_add_(params, grads, -lr);
    model.emb.index_add_(0, flat_ids, rows_grad, -lr);
  } else {
    at::_foreach_addcmul_(mlp_state, grads, grads, 1.0);
    std::vector<torch::Tensor> denom = at::_foreach_sqrt(mlp_state);
    at::_foreach_add_(denom, kAdagradEps);
    at::_foreach_addcdiv_(params, grads, denom, -lr);

    // Row-wise: sum the gradients of each distinct row, then one state value per row.
    auto uniq = at::_unique2(flat_ids, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/false);
    const torch::Tensor& rows = std::get<0>(uniq);
    const torch::Tensor& inverse = std::get<1>(uniq);
    torch::Tensor g = torch::zeros({rows.size(0), rows_grad.size(1)}, rows_grad.options());
    g.index_add_(0, inverse.reshape({-1}), rows_grad);
    emb_state.index_add_(0, rows, g.pow(2).mean(1));  // rows are distinct
    torch::Tensor sum = emb_state.index_select(0, rows);
    torch::Tensor update = g / (sum.sqrt() + kAdagradEps).unsqueeze(1);
    model.emb.index_add_(0, rows, update, -lr);
  }
  for (auto& p : params) p.mutable_grad().reset();
}

torch::Tensor train_step(Dlrm& model, Optimizer& opt, const torch::Tensor& dense, const torch::Tensor& flat_ids,
                         const torch::Tensor& labels, double lr) {
  torch::Tensor rows = model.gather(flat_ids);
  rows.requires_grad_(true);
  torch::Tensor logits = model.forward(dense, rows);
  torch::Tensor loss = at::binary_cross_entropy_with_logits(logits, labels);
  loss.backward();
  opt.step(model, flat_ids, rows.grad().reshape({-1, model.arch().emb_dim}), lr);
  return loss.detach();
}

}  // namespace sluice::train
