// The DLRM model (internal: includes libtorch).
//
// Embeddings: all 26 tables live in ONE weight tensor [sum(table_sizes), d] (float32, or float16 /
// bfloat16 with --emb-dtype: the fused GPU step computes in float32 and rounds only what it stores);
// table t's row r is row offsets[t] + r. A step gathers the B*26 rows with one index_select into a fresh leaf tensor, runs the
// dense part under autograd, and hands the gradient of the gathered rows to the optimiser, which updates
// only the touched rows (SGD: one index_add_, duplicates accumulate; Adagrad: row-wise state).
//
// This header also includes, for its users, the trainer's other model-side headers: messages.hpp
// (sizes, durations, oom_guard), optimizer.hpp (Optimizer, train_step) and checkpoint.hpp (the
// checkpoint files, state_tensors).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/checkpoint.hpp"
#include "trainer/messages.hpp"
#include "trainer/optimizer.hpp"

namespace sluice::train {

// Embedding rows [first_row, first_row + rows) of table `table`, d values each, into out (row-major):
// U(-scale, scale) from a counter-based generator keyed by (seed, table, row, column). A row's values
// depend on nothing else: not on the table's size, the device or the order rows are made in, so a
// table sized by a capacity (online ids) starts with the same rows as one sized by a vocabulary.
void init_embedding_rows(float* out, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d,
                         double scale);

torch::ScalarType emb_scalar_type(EmbDtype t);  // kFloat32, kFloat16, kBFloat16

// Before any allocation: throws sluice::Error when the model and its optimiser state cannot fit on
// `device` (a GPU: its free memory now, less a margin for batches and activations; the CPU: memory and
// swap). The message says what needs how much, what is there, and the largest --max-ind-range that
// would fit.
void check_model_fits(const Arch& arch, OptimizerKind optimizer, const torch::Device& device);

// Rows [begin, begin + rows) of a table.
struct RowRange {
  int64_t begin = 0;
  int64_t rows = 0;
};

class Dlrm {
 public:
  // Meta's initialisation, seeded: Linear W ~ N(0, sqrt(2/(fan_in+fan_out))), b ~ N(0, sqrt(1/fan_out));
  // table rows from init_embedding_rows (Arch::emb_init_scale). The MLPs are drawn on the CPU from a
  // generator seeded with `seed`; every device starts from the same weights.
  //
  // held (training on several ranks, tables sharded): the rows of each table this model holds, a range
  // of the table's rows (all of them, none, or a block of a table split row-wise); a held row has the
  // value it has in the whole table. Empty: every table whole.
  Dlrm(const Arch& arch, uint64_t seed, torch::Device device, Precision precision = Precision::kFp32,
       std::vector<RowRange> held = {});

  const Arch& arch() const { return arch_; }
  torch::Device device() const { return device_; }
  Precision precision() const { return precision_; }
  int64_t total_rows() const { return total_rows_; }
  const std::vector<int64_t>& table_offsets() const { return table_offsets_; }
  // The rows of each table held by this model (table t's row table_held()[t].begin + i is row
  // table_offsets()[t] + i of emb).
  const std::vector<RowRange>& table_held() const { return held_; }

  // [B, 26] table-local ids (int32 or int64, on the model's device) -> [B*26] rows of `emb`.
  // id_modulo > 0 first takes every id modulo that value.
  torch::Tensor flat_ids(const torch::Tensor& sparse, uint64_t id_modulo = 0) const;
  // The element type of flat_ids()'s result (int32 where every table's rows fit it).
  torch::ScalarType id_type() const { return offsets_.scalar_type(); }
  // The rows of the B*26 lookups, [B, 26, d] float32 (a fresh tensor, no autograd history).
  torch::Tensor gather(const torch::Tensor& flat_ids) const;
  // Logits [B] (float32) from dense features [B, 13] and gathered rows [B, 26, d].
  torch::Tensor forward(const torch::Tensor& dense, const torch::Tensor& rows) const;

  // MLP parameters in a fixed order: bottom W0, b0, W1, b1, ..., then top W0, b0, ...
  std::vector<torch::Tensor> mlp_params() const;
  std::vector<std::string> mlp_param_names() const;

  torch::Tensor emb;                          // [total_rows, d] of arch().emb_dtype, no autograd
  std::vector<torch::Tensor> bot_w, bot_b;    // requires_grad leaves
  std::vector<torch::Tensor> top_w, top_b;

 private:
  // The tables' initial values (init_embedding_rows; on a GPU by the kernel that gives the same values;
  // half tables hold them rounded to nearest).
  void init_tables(uint64_t seed);
  torch::Tensor mlp(const torch::Tensor& x, const std::vector<torch::Tensor>& w,
                    const std::vector<torch::Tensor>& b, bool relu_last) const;

  Arch arch_;
  torch::Device device_;
  Precision precision_;
  int64_t total_rows_ = 0;
  std::vector<int64_t> table_offsets_;
  std::vector<RowRange> held_;
  torch::Tensor offsets_;  // [26], index dtype, on the device
  torch::Tensor tril_;     // [351] flat (i*27+j, j<i) positions of the kept interaction pairs
};

}  // namespace sluice::train
