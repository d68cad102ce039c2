// The DLRM split across ranks (internal: includes libtorch).
//
// Every rank holds the MLPs whole (data-parallel: their gradients are summed over the ranks) and the
// embedding tables it owns (table-wise sharding, dist::assign_tables). A global batch of B rows is split
// into consecutive shares (dist::split_rows): rank p computes the dense part for its share. Lookups go to
// the tables' owners and back in three all-to-alls:
//   ids:       each rank sends the ids of its share, table by table, to the tables' owners;
//   rows:      each owner gathers the rows of all B samples for its tables and sends every rank the rows
//              of its share;
//   gradients: backwards, each rank sends the gradients of its share's rows to the owners, which update
//              their tables with the gradients of all B samples (the optimiser's usual sparse update).
// The loss is the mean over the global batch, so the update is the one a single process makes on the
// same batch (up to the order of float sums).
#pragma once

#include <vector>

#include "trainer/dist.hpp"
#include "trainer/dlrm.hpp"

namespace sluice::train {

class Sharded {
 public:
  // model: this rank's Dlrm, built with the ownership owned(rank).
  Sharded(Dlrm& model, dist::Group& group, std::vector<int> owner);

  // Whether this rank owns each table (for the Dlrm's constructor).
  static std::vector<bool> owned(const std::vector<int>& owner, int rank);

  struct Lookup {
    torch::Tensor own_flat;  // [B * own tables] rows of model.emb looked up here, sample-major
    torch::Tensor rows;      // [b, 26, d] float32: this rank's share, every table
  };
  // flat_ids: this rank's share, from Dlrm::flat_ids ([b * 26]); shares: every rank's rows.
  Lookup lookup(const torch::Tensor& flat_ids, const std::vector<int64_t>& shares) const;
  // The gradients of a lookup's rows ([b, 26, d]) -> the owners: [B * own tables, d], in own_flat's order.
  torch::Tensor grads_to_owners(const torch::Tensor& rows_grad, const std::vector<int64_t>& shares) const;

  // One optimiser step on this rank's share of a global batch (shares as above). Returns the mean loss
  // over the global batch (0-dim float32 on the device).
  torch::Tensor train_step(Optimizer& opt, const torch::Tensor& dense, const torch::Tensor& flat_ids,
                           const torch::Tensor& labels, const std::vector<int64_t>& shares, double lr);

  dist::Group& group() const { return group_; }

 private:
  Dlrm& model_;
  dist::Group& group_;
  std::vector<int> owner_;
  std::vector<std::vector<int64_t>> tables_of_;  // per rank, ascending
  torch::Tensor offsets_;                        // [26] the model's table offsets (flat id - offset = id)
  torch::Tensor own_cols_;                       // this rank's tables
  std::vector<torch::Tensor> cols_of_;           // every rank's tables
  torch::Tensor own_offsets_;                    // [own tables]
  torch::Tensor perm_, inv_;                     // tables in owner order, and back
};

}  // namespace sluice::train
