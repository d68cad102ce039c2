// The DLRM model, its optimisers and its checkpoint files (internal: includes libtorch).
//
// Embeddings: all 26 tables live in ONE fp32 weight tensor [sum(table_sizes), d]; table t's row r is
// row offsets[t] + r. A step gathers the B*26 rows with one index_select into a fresh leaf tensor, runs the
// dense part under autograd, and hands the gradient of the gathered rows to the optimiser, which updates
// only the touched rows (SGD: one index_add_, duplicates accumulate; Adagrad: row-wise state).
#pragma once

#include <functional>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"

namespace sluice::train {

// ---- errors -------------------------------------------------------------------------------------

// "33.8 M", "2.16 GB", "1m02s": sizes and durations for messages.
std::string count_text(double n);
std::string bytes_text(double bytes);
std::string duration_text(double seconds);

// Whether a libtorch error reports a failed allocation (host or GPU).
bool is_out_of_memory(const c10::Error& e);
// libtorch's message without its C++ backtrace (first line only when `first_line`).
std::string torch_message(const c10::Error& e, bool first_line = false);

// Runs f(). A failed allocation (std::bad_alloc, or a libtorch out-of-memory error) becomes
// sluice::Error("out of memory " + what()) (for a GPU with libtorch's own account of the memory
// appended); any other libtorch error becomes a sluice::Error with libtorch's message, without its
// backtrace. `what` is called only on failure.
template <class F, class What>
decltype(auto) oom_guard(const What& what, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw Error("out of memory " + what());
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e)) throw Error(torch_message(e));
    const std::string m = torch_message(e, true);
    // The GPU allocator says how much it tried to get and what it holds; the CPU one adds nothing.
    throw Error("out of memory " + what() + (m.find("CUDA") != std::string::npos ? ": " + m : std::string()));
  }
}

// Before a large allocation: throws sluice::Error("out of memory " + what()) when `bytes` can never
// fit on `device`: more than the machine's memory and swap (or the address-space limit) for the CPU,
// more than the GPU's memory for a GPU. Machines that overcommit memory would otherwise accept the
// allocation and fail much later, or have the process killed, while the memory is first touched.
template <class What>
void require_capacity(const What& what, double bytes, const torch::Device& device);
double device_capacity_bytes(const torch::Device& device);

template <class What>
void require_capacity(const What& what, double bytes, const torch::Device& device) {
  const double cap = device_capacity_bytes(device);
  if (cap > 0 && bytes > cap) throw Error("out of memory " + what());
}

// Embedding rows [first_row, first_row + rows) of table `table`, d values each, into out (row-major):
// U(-scale, scale) from a counter-based generator keyed by (seed, table, row, column). A row's values
// depend on nothing else: not on the table's size, the device or the order rows are made in, so a
// table sized by a capacity (online ids) starts with the same rows as one sized by a vocabulary.
void init_embedding_rows(float* out, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d,
                         double scale);

// Before any allocation: throws sluice::Error when the model and its optimiser state cannot fit on
// `device` (a GPU: its free memory now, less a margin for batches and activations; the CPU: memory and
// swap). The message says what needs how much, what is there, and the largest --max-ind-range that
// would fit.
void check_model_fits(const Arch& arch, OptimizerKind optimizer, const torch::Device& device);

class Dlrm {
 public:
  // Meta's initialisation, seeded: Linear W ~ N(0, sqrt(2/(fan_in+fan_out))), b ~ N(0, sqrt(1/fan_out));
  // table rows ~ U(-sqrt(1/n), sqrt(1/n)). The MLPs are drawn on the CPU from a generator seeded with
  // `seed` (the same on every device); the tables are drawn on the CPU from a generator seeded with
  // seed+1 when the device is the CPU, and on the GPU from its generator seeded with seed+1 otherwise.
  Dlrm(const Arch& arch, uint64_t seed, torch::Device device, Precision precision = Precision::kFp32);

  const Arch& arch() const { return arch_; }
  torch::Device device() const { return device_; }
  Precision precision() const { return precision_; }
  int64_t total_rows() const { return total_rows_; }
  const std::vector<int64_t>& table_offsets() const { return table_offsets_; }

  // [B, 26] table-local ids (int32 or int64, on the model's device) -> [B*26] rows of `emb`.
  // id_modulo > 0 first takes every id modulo that value.
  torch::Tensor flat_ids(const torch::Tensor& sparse, uint64_t id_modulo = 0) const;
  // The rows of the B*26 lookups, [B, 26, d] (a fresh tensor, no autograd history).
  torch::Tensor gather(const torch::Tensor& flat_ids) const;
  // Logits [B] (float32) from dense features [B, 13] and gathered rows [B, 26, d].
  torch::Tensor forward(const torch::Tensor& dense, const torch::Tensor& rows) const;

  // MLP parameters in a fixed order: bottom W0, b0, W1, b1, ..., then top W0, b0, ...
  std::vector<torch::Tensor> mlp_params() const;
  std::vector<std::string> mlp_param_names() const;

  torch::Tensor emb;                          // [total_rows, d] fp32, no autograd
  std::vector<torch::Tensor> bot_w, bot_b;    // requires_grad leaves
  std::vector<torch::Tensor> top_w, top_b;

 private:
  torch::Tensor mlp(const torch::Tensor& x, const std::vector<torch::Tensor>& w,
                    const std::vector<torch::Tensor>& b, bool relu_last) const;

  Arch arch_;
  torch::Device device_;
  Precision precision_;
  int64_t total_rows_ = 0;
  std::vector<int64_t> table_offsets_;
  torch::Tensor offsets_;  // [26], index dtype, on the device
  torch::Tensor tril_;     // [351] flat (i*27+j, j<i) positions of the kept interaction pairs
};

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

// ---- checkpoint files ---------------------------------------------------------------------------
// Layout: "SLUICECK" | u32 version | u64 n | n bytes of JSON (the caller's metadata plus a "tensors" list
// of {name, dtype, shape, offset, nbytes}) | raw little-endian tensor data | u32 CRC-32 of every byte
// before it | "SLCKEND\0". Written through an AtomicFile (a hidden temporary sibling, fsync'ed and
// renamed over PATH): on any failure PATH keeps its previous contents and no temporary file remains.

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // float32, any device
};

void write_checkpoint(const std::string& path, nlohmann::json meta, const std::vector<NamedTensor>& tensors);

struct CheckpointHeader {
  std::string path;
  nlohmann::json meta;
  uint64_t data_offset = 0;
  uint64_t file_size = 0;
};

// Reads and checks the header (magic, version, sizes against the file's size); throws sluice::Error
// naming the file when it is missing, truncated or corrupt.
CheckpointHeader read_checkpoint_header(const std::string& path);

// Streams every tensor into dest(name, shape) (a tensor of that shape on any device; an undefined tensor
// skips it) and verifies the checksum at the end (throws sluice::Error on a mismatch).
void read_checkpoint_tensors(
    const CheckpointHeader& header,
    const std::function<torch::Tensor(const std::string&, const std::vector<int64_t>&)>& dest);

// Every tensor of a checkpoint, on the CPU (for tests and tools).
std::map<std::string, torch::Tensor> load_checkpoint_tensors(const std::string& path);

// The tensors that make up the training state (model, then optimiser state).
std::vector<NamedTensor> state_tensors(const Dlrm& model, const Optimizer& opt);

}  // namespace sluice::train
