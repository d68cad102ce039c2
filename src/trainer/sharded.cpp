// The DLRM split across ranks: sharded lookups (table-wise and row-wise) and the data-parallel step.
#include "trainer/sharded.hpp"

#include <numeric>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"

namespace sluice::train {

namespace {

int64_t sum_of(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

torch::Tensor index_tensor(const std::vector<int64_t>& v, torch::ScalarType type, const torch::Device& dev) {
  return torch::tensor(v, torch::kInt64).to(type).to(dev);
}

}  // namespace

std::vector<RowRange> Sharded::held(const std::vector<int>& owner, const std::vector<int64_t>& sizes, int world,
                                    int rank) {
  std::vector<RowRange> h(owner.size());
  for (size_t t = 0; t < owner.size(); ++t) {
    if (owner[t] == dist::kRowWise) {
      const int64_t block = dist::row_block(sizes[t], world);
      const int64_t begin = std::min(sizes[t], block * rank);
      h[t] = RowRange{begin, std::min(sizes[t], begin + block) - begin};
    } else if (owner[t] == rank) {
      h[t] = RowRange{0, sizes[t]};
    }
  }
  return h;
}

Sharded::Sharded(Dlrm& model, dist::Group& group, std::vector<int> owner)
    : model_(model), group_(group), owner_(std::move(owner)) {
  const int world = group_.world();
  const int rank = group_.rank();
  if (owner_.size() != static_cast<size_t>(kNumSparse)) throw Error("internal: one owner per table");
  tables_of_.assign(static_cast<size_t>(world), {});
  for (size_t t = 0; t < owner_.size(); ++t) {
    if (owner_[t] == dist::kRowWise) {
      row_wise_.push_back(static_cast<int64_t>(t));
      continue;
    }
    if (owner_[t] < 0 || owner_[t] >= world) throw Error("internal: a table's owner is not a rank");
    tables_of_[static_cast<size_t>(owner_[t])].push_back(static_cast<int64_t>(t));
  }
  const std::vector<RowRange> want = held(owner_, model_.arch().table_sizes, world, rank);
  for (size_t t = 0; t < want.size(); ++t)
    if (model_.table_held()[t].begin != want[t].begin || model_.table_held()[t].rows != want[t].rows)
      throw Error("internal: the model does not hold this rank's rows");

  const torch::Device dev = model_.device();
  const torch::ScalarType id = model_.id_type();
  std::vector<int64_t> perm;
  for (const auto& cols : tables_of_) {
    cols_of_.push_back(index_tensor(cols, torch::kInt64, dev));
    perm.insert(perm.end(), cols.begin(), cols.end());
  }
  perm.insert(perm.end(), row_wise_.begin(), row_wise_.end());
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  perm_ = index_tensor(perm, torch::kInt64, dev);
  inv_ = index_tensor(inv, torch::kInt64, dev);

  const auto& off = model_.table_offsets();
  std::vector<int64_t> own_off;
  for (int64_t t : tables_of_[static_cast<size_t>(rank)]) own_off.push_back(off[static_cast<size_t>(t)]);
  std::vector<int64_t> rw_begin, rw_rows, rw_off;
  for (int64_t t : row_wise_) {
    const RowRange& h = model_.table_held()[static_cast<size_t>(t)];
    rw_begin.push_back(h.begin);
    rw_rows.push_back(h.rows);
    rw_off.push_back(off[static_cast<size_t>(t)]);
  }
  offsets_ = index_tensor(off, id, dev);
  own_offsets_ = index_tensor(own_off, id, dev);
  rw_cols_ = index_tensor(row_wise_, torch::kInt64, dev);
  rw_begin_ = index_tensor(rw_begin, id, dev);
  rw_rows_ = index_tensor(rw_rows, id, dev);
  rw_offsets_ = index_tensor(rw_off, id, dev);
}

Sharded::Sizes Sharded::sizes(const std::vector<int64_t>& shares) const {
  Sizes z;
  z.world = group_.world();
  z.r = static_cast<size_t>(group_.rank());
  z.b = shares[z.r];
  z.B = sum_of(shares);
  z.d = model_.arch().emb_dim;
  z.n_own = static_cast<int64_t>(tables_of_[z.r].size());
  z.n_rw = static_cast<int64_t>(row_wise_.size());
  return z;
}

Sharded::Lookup Sharded::lookup(const torch::Tensor& flat_ids, const std::vector<int64_t>& shares) const {
  torch::NoGradGuard no_grad;
  const auto [world, r, b, B, d, n_own, n_rw] = sizes(shares);
  if (flat_ids.numel() != b * kNumSparse) throw Error("internal: a share's ids do not match its rows");
  const torch::Tensor local = flat_ids.view({b, kNumSparse}) - offsets_;  // table-local ids
  std::vector<int64_t> send(static_cast<size_t>(world)), recv(static_cast<size_t>(world));
  Lookup lk;

  // Table-wise: ids to the owners (for each rank q, this share's ids of q's tables, sample-major).
  std::vector<torch::Tensor> parts;
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    parts.push_back(local.index_select(1, cols_of_[qq]).reshape({-1}));
    send[qq] = b * static_cast<int64_t>(tables_of_[qq].size());
    recv[qq] = shares[qq] * n_own;
  }
  const torch::Tensor own_ids = group_.alltoall(torch::cat(parts), send, recv);  // [B * n_own], rank-major
  const torch::Tensor tw_flat = (own_ids.view({B, n_own}) + own_offsets_).reshape({-1});
  torch::Tensor own_rows = model_.emb.index_select(0, tw_flat);  // [B * n_own, d]
  if (own_rows.scalar_type() != torch::kFloat32) own_rows = own_rows.to(torch::kFloat32);
  // ... their rows back: every rank p gets its share's rows of this rank's tables.
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    send[qq] = shares[qq] * n_own * d;
    recv[qq] = b * static_cast<int64_t>(tables_of_[qq].size()) * d;
  }
  const torch::Tensor got = group_.alltoall(own_rows.reshape({-1}), send, recv);
  std::vector<torch::Tensor> columns;  // exchange order: owners' tables, then row-wise ones
  int64_t at = 0;
  for (int q = 0; q < world; ++q) {
    const int64_t n_q = static_cast<int64_t>(tables_of_[static_cast<size_t>(q)].size());
    columns.push_back(got.narrow(0, at, b * n_q * d).view({b, n_q, d}));
    at += b * n_q * d;
  }

  // Row-wise: every rank gets all B samples' ids, looks up those in its block, and sends every rank
  // its share of them (zeros elsewhere); the sum over the ranks is the lookup.
  torch::Tensor rw_flat = torch::empty({0}, flat_ids.options());
  lk.rw_mine = torch::empty({0}, flat_ids.options().dtype(torch::kBool));
  if (n_rw > 0) {
    const torch::Tensor mine_ids = local.index_select(1, rw_cols_).reshape({-1});  // [b * n_rw]
    for (int q = 0; q < world; ++q) {
      const auto qq = static_cast<size_t>(q);
      send[qq] = b * n_rw;
      recv[qq] = shares[qq] * n_rw;
    }
    const torch::Tensor all_ids = group_.alltoall(mine_ids.repeat({world}), send, recv).view({B, n_rw});
    const torch::Tensor in_block = all_ids - rw_begin_;
    const torch::Tensor mine = (in_block >= 0) & (in_block < rw_rows_);
    lk.rw_mine = mine.reshape({-1});
    const torch::Tensor flat = torch::where(mine, in_block + rw_offsets_, torch::zeros_like(in_block)).reshape({-1});
    torch::Tensor rows = model_.emb.size(0) > 0 ? model_.emb.index_select(0, flat).to(torch::kFloat32)
                                                : torch::zeros({B * n_rw, d}, own_rows.options());
    rows.masked_fill_(mine.reshape({-1, 1}).logical_not(), 0.0f);
    rw_flat = flat.masked_select(lk.rw_mine);
    for (int q = 0; q < world; ++q) {
      const auto qq = static_cast<size_t>(q);
      send[qq] = shares[qq] * n_rw * d;
      recv[qq] = b * n_rw * d;
    }
    const torch::Tensor parts_in = group_.alltoall(rows.reshape({-1}), send, recv).view({world, b, n_rw, d});
    columns.push_back(parts_in.sum(0));
  }
  lk.own_flat = torch::cat({tw_flat, rw_flat});
  lk.rows = torch::cat(columns, 1).index_select(1, inv_);  // exchange order -> table order
  return lk;
}

torch::Tensor Sharded::grads_to_owners(const torch::Tensor& rows_grad, const std::vector<int64_t>& shares,
                                       const torch::Tensor& rw_mine) const {
  torch::NoGradGuard no_grad;
  const auto [world, r, b, B, d, n_own, n_rw] = sizes(shares);
  const torch::Tensor ordered = rows_grad.index_select(1, perm_);  // [b, 26, d], exchange order
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> send(static_cast<size_t>(world)), recv(static_cast<size_t>(world));
  int64_t col = 0;
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    const int64_t n_q = static_cast<int64_t>(tables_of_[qq].size());
    parts.push_back(ordered.narrow(1, col, n_q).reshape({-1}));
    col += n_q;
    send[qq] = b * n_q * d;
    recv[qq] = shares[qq] * n_own * d;
  }
  torch::Tensor tw = group_.alltoall(torch::cat(parts), send, recv).view({B * n_own, d});
  if (n_rw == 0) return tw;
  // Row-wise: every rank gets every sample's gradients and keeps those of its block's rows.
  const torch::Tensor mine_grads = ordered.narrow(1, col, n_rw).reshape({-1});  // [b * n_rw * d]
  for (int q = 0; q < world; ++q) {
    const auto qq = static_cast<size_t>(q);
    send[qq] = b * n_rw * d;
    recv[qq] = shares[qq] * n_rw * d;
  }
  const torch::Tensor all = group_.alltoall(mine_grads.repeat({world}), send, recv).view({B * n_rw, d});
  return torch::cat({tw, all.index({rw_mine})});
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
  const torch::Tensor grads = grads_to_owners(rows.grad(), shares, lk.rw_mine);
  opt.step(model_, lk.own_flat, grads, lr);
  return buf[at] / static_cast<double>(B);
}

}  // namespace sluice::train
