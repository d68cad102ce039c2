// The DLRM split across ranks (internal: includes libtorch).
//
// Every rank holds the MLPs whole (data-parallel: their gradients are summed over the ranks) and its
// part of the embedding tables (dist::assign_tables): whole tables (table-wise), and one block of rows of
// each table split row-wise. A global batch of B rows is split into consecutive shares
// (dist::split_rows): rank p computes the dense part for its share. Lookups go to the rows' holders and
// back in all-to-alls:
//   table-wise tables:
//     ids:       each rank sends the ids of its share, table by table, to the tables' owners;
//     rows:      each owner gathers the rows of all B samples for its tables and sends every rank the
//                rows of its share;
//     gradients: backwards, each rank sends the gradients of its share's rows to the owners;
//   row-wise tables:
//     ids:       every rank gets the ids of all B samples;
//     rows:      each rank looks up the ids in its block (zeros for the others) and sends every rank its
//                share of them; a rank adds what it gets (one term of each sum is not zero: exact);
//     gradients: every rank gets the gradients of all B samples and keeps those of its block's rows.
//   Each holder then updates its rows with the gradients of all B samples (the optimiser's usual sparse
//   update).
// The loss is the mean over the global batch, so the update is the one a single process makes on the
// same batch (up to the order of float sums).
#pragma once

#include <vector>

#include "trainer/dist.hpp"
#include "trainer/dlrm.hpp"

namespace sluice::train {

class Sharded {
 public:
  // model: this rank's Dlrm, built with the rows held(owner, sizes, world, rank).
  Sharded(Dlrm& model, dist::Group& group, std::vector<int> owner);

  // The rows of each table a rank holds (for the Dlrm's constructor).
  static std::vector<RowRange> held(const std::vector<int>& owner, const std::vector<int64_t>& sizes, int world,
                                    int rank);

  struct Lookup {
    torch::Tensor own_flat;  // rows of model.emb that get gradients here: table-wise, then row-wise ones
    torch::Tensor rw_mine;   // [B * row-wise tables] bool: which of those lookups this rank holds
    torch::Tensor rows;      // [b, 26, d] float32: this rank's share, every table
  };
  // flat_ids: this rank's share, from Dlrm::flat_ids ([b * 26]); shares: every rank's rows.
  Lookup lookup(const torch::Tensor& flat_ids, const std::vector<int64_t>& shares) const;
  // The gradients of a lookup's rows ([b, 26, d]) -> the rows' holders: [own_flat's size, d], in its order.
  torch::Tensor grads_to_owners(const torch::Tensor& rows_grad, const std::vector<int64_t>& shares,
                                const torch::Tensor& rw_mine) const;

  // One optimiser step on this rank's share of a global batch (shares as above). Returns the mean loss
  // over the global batch (0-dim float32 on the device).
  torch::Tensor train_step(Optimizer& opt, const torch::Tensor& dense, const torch::Tensor& flat_ids,
                           const torch::Tensor& labels, const std::vector<int64_t>& shares, double lr);

  dist::Group& group() const { return group_; }

 private:
  // A step's sizes: ranks, this rank, its share b of the B rows, d, its whole tables, the row-wise ones.
  struct Sizes {
    int world = 1;
    size_t r = 0;
    int64_t b = 0, B = 0, d = 0, n_own = 0, n_rw = 0;
  };
  Sizes sizes(const std::vector<int64_t>& shares) const;

  Dlrm& model_;
  dist::Group& group_;
  std::vector<int> owner_;
  std::vector<std::vector<int64_t>> tables_of_;  // table-wise tables per rank, ascending
  std::vector<int64_t> row_wise_;                // row-wise tables, ascending
  torch::Tensor offsets_;                        // [26] the model's table offsets (flat id - offset = id)
  std::vector<torch::Tensor> cols_of_;           // every rank's table-wise tables
  torch::Tensor own_offsets_;                    // [own table-wise tables]
  torch::Tensor rw_cols_, rw_begin_, rw_rows_, rw_offsets_;  // row-wise tables: this rank's block of each
  torch::Tensor perm_, inv_;                     // tables in exchange order (owners', then row-wise), and back
};

}  // namespace sluice::train
