// The DLRM split across ranks: table-wise sharded lookups and the data-parallel step.
#include "trainer/sharded.hpp"

#include <numeric>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"

namespace sluice::train {

namespace {

int64_t sum_of(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

}  // namespace

std::vector<bool> Sharded::owned(const std::vector<int>& owner, int rank) {
  std::vector<bool> o(owner.size());
  for (size_t t = 0; t < owner.size(); ++t) o[t] = owner[t] == rank;
  return o;
}

Sharded::Sharded(Dlrm& model, dist::Group& group, std::vector<int> owner)
    : model_(model), group_(group), owner_(std::move(owner)) {
  const int world = group_.world();
  if (owner_.size() != static_cast<size_t>(kNumSparse)) throw Error("internal: one owner per table");
  tables_of_.assign(static_cast<size_t>(world), {});
  for (size_t t = 0; t < owner_.size(); ++t) {
    if (owner_[t] < 0 || owner_[t] >= world) throw Error("internal: a table's owner is not a rank");
    tables_of_[static_cast<size_t>(owner_[t])].push_back(static_cast<int64_t>(t));
  }
  const torch::Device dev = model_.device();
  std::vector<int64_t> perm;
  for (const auto& cols : tables_of_) {
    cols_of_.push_back(torch::tensor(cols, torch::kInt64).to(dev));
    perm.insert(perm.end(), cols.begin(), cols.end());
  }
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  perm_ = torch::tensor(perm, torch::kInt64).to(dev);
  inv_ = torch::tensor(inv, torch::kInt64).to(dev);
  const auto& own = tables_of_[static_cast<size_t>(group_.rank())];
  own_cols_ = cols_of_[static_cast<size_t>(group_.rank())];
  std::vector<int64_t> own_off;
  for (int64_t t : own) {
    if (model_.table_rows()[static_cast<size_t>(t)] != model_.arch().table_sizes[static_cast<size_t>(t)])
      throw Error("internal: the model lacks a table this rank owns");
    own_off.push_back(model_.table_offsets()[static_cast<size_t>(t)]);
  }
  offsets_ = torch::tensor(model_.table_offsets(), torch::kInt64).to(model_.id_type()).to(dev);
  own_offsets_ = torch::tensor(own_off, torch::kInt64).to(model_.id_type()).to(dev);
}

Sharded::Lookup Sharded::lookup(const torch::Tensor& flat_ids, const std::vector<int64_t>& shares) const {
  torch::NoGradGuard no_grad;
  const int world = group_.world();
  const auto r = static_cast<size_t>(group_.rank());
  const int64_t b = shares[r], B = sum_of(shares), d = model_.arch().emb_dim;
  const int64_t n_own = static_cast<int64_t>(tables_of_[r].size());
  if (flat_ids.numel() != b * kNumSparse) throw Error("internal: a share's ids do not match its rows");

  // Ids to the owners: for each rank q, this share's ids of q's tables (sample-major).
  const torch::Tensor local = flat_ids.view({b, kNumSparse}) - offsets_;
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> send(static_cast<size_t>(world)), recv(static_cast<size_t>(world));
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    const int64_t n_q = static_cast<int64_t>(tables_of_[qq].size());
    parts.push_back(local.index_select(1, cols_of_[qq]).reshape({-1}));
    send[qq] = b * n_q;
    recv[qq] = shares[qq] * n_own;
  }
  const torch::Tensor own_ids = group_.alltoall(torch::cat(parts), send, recv);  // [B * n_own], rank-major

  Lookup lk;
  lk.own_flat = (own_ids.view({B, n_own}) + own_offsets_).reshape({-1});
  torch::Tensor own_rows = model_.emb.index_select(0, lk.own_flat);  // [B * n_own, d]
  if (own_rows.scalar_type() != torch::kFloat32) own_rows = own_rows.to(torch::kFloat32);

  // Rows back: every rank p gets its share's rows of this rank's tables; this rank gets, from each owner
  // q, [b, n_q, d].
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    send[qq] = shares[qq] * n_own * d;
    recv[qq] = b * static_cast<int64_t>(tables_of_[qq].size()) * d;
  }
  const torch::Tensor got = group_.alltoall(own_rows.reshape({-1}), send, recv);
  std::vector<torch::Tensor> by_owner;
  int64_t at = 0;
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    const int64_t n_q = static_cast<int64_t>(tables_of_[qq].size());
    by_owner.push_back(got.narrow(0, at, b * n_q * d).view({b, n_q, d}));
    at += b * n_q * d;
  }
  lk.rows = torch::cat(by_owner, 1).index_select(1, inv_);  // owner order -> table order
  return lk;
}

torch::Tensor Sharded::grads_to_owners(const torch::Tensor& rows_grad, const std::vector<int64_t>& shares) const {
  torch::NoGradGuard no_grad;
  const int world = group_.world();
  const auto r = static_cast<size_t>(group_.rank());
  const int64_t b = shares[r], B = sum_of(shares), d = model_.arch().emb_dim;
  const int64_t n_own = static_cast<int64_t>(tables_of_[r].size());
  const torch::Tensor by_owner = rows_grad.index_select(1, perm_);  // [b, 26, d], owner order
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> send(static_cast<size_t>(world)), recv(static_cast<size_t>(world));
  int64_t col = 0;
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    const int64_t n_q = static_cast<int64_t>(tables_of_[qq].size());
    parts.push_back(by_owner.narrow(1, col, n_q).reshape({-1}));
    col += n_q;
    send[qq] = b * n_q * d;
    recv[qq] = shares[qq] * n_own * d;
  }
  return group_.alltoall(torch::cat(parts), send, recv).view({B * n_own, d});
}

torch::Tensor Sharded::train_step(Optimizer& opt, const torch::Tensor& dense, const torch::Tensor& flat_ids,
                                  const torch::Tensor& labels, const std::vector<int64_t>& shares, double lr) {
  const int64_t B = sum_of(shares);
  Lookup lk = lookup(flat_ids, shares);
  torch::Tensor rows = lk.rows;
  rows.requires_grad_(true);
  const torch::Tensor logits = model_.forward(dense, rows);
  const torch::Tensor loss_sum = at::binary_cross_entropy_with_logits(logits, labels, {}, {}, at::Reduction::Sum);
  (loss_sum / static_cast<double>(B)).backward();

  // The MLPs' gradients and the loss, summed over the ranks in one collective.
  std::vector<torch::Tensor> params = model_.mlp_params();
  std::vector<torch::Tensor> flat;
  for (auto& p : params) {
    if (!p.grad().defined()) throw Error("internal: a parameter got no gradient");
    flat.push_back(p.grad().reshape({-1}));
  }
  flat.push_back(loss_sum.detach().to(torch::kFloat32).reshape({1}));
  torch::Tensor buf = torch::cat(flat);
  group_.allreduce_sum(buf);
  int64_t at = 0;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : params) {
      p.mutable_grad().copy_(buf.narrow(0, at, p.numel()).view_as(p));
      at += p.numel();
    }
  }
  const torch::Tensor grads = grads_to_owners(rows.grad(), shares);
  opt.step(model_, lk.own_flat, grads, lr);
  return buf[at] / static_cast<double>(B);
}

}  // namespace sluice::train
