// The DLRM model.
#include "trainer/dlrm.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "trainer/cuda/numerics.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/batch_copy.hpp"
#endif
#if defined(SLUICE_FUSED_GPU)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "trainer/cuda/embedding.hpp"
#endif

namespace sluice::train {

namespace {

constexpr int64_t kVectors = 1 + kNumSparse;  // the bottom output and the 26 embeddings

bool use_int32_index(int64_t total_rows) { return total_rows < std::numeric_limits<int32_t>::max(); }

}  // namespace

// ---- model --------------------------------------------------------------------------------------

void init_embedding_rows(float* out, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d,
                         double scale) {
  const uint64_t key = num::init_table_key(seed, table);
  const float a = static_cast<float>(scale);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t row_key = num::init_row_key(key, first_row + r);
    for (int64_t j = 0; j < d; ++j) out[r * d + j] = num::init_value(row_key, j, a);
  }
}

torch::ScalarType emb_scalar_type(EmbDtype t) {
  switch (t) {
    case EmbDtype::kFp16: return torch::kFloat16;
    case EmbDtype::kBf16: return torch::kBFloat16;
    case EmbDtype::kFp32: break;
  }
  return torch::kFloat32;
}

double emb_elem_bytes(EmbDtype t) { return t == EmbDtype::kFp32 ? 4.0 : 2.0; }

namespace {
const char* emb_type_text(EmbDtype t) {  // for messages
  return t == EmbDtype::kFp16 ? "float16" : t == EmbDtype::kBf16 ? "bfloat16" : "float32";
}
}  // namespace

Dlrm::Dlrm(const Arch& arch, uint64_t seed, torch::Device device, Precision precision, std::vector<RowRange> held)
    : arch_(arch), device_(device), precision_(precision), held_(std::move(held)) {
  validate_arch(arch_);
  const int64_t d = arch_.emb_dim;
  if (held_.empty()) {
    for (int64_t n : arch_.table_sizes) held_.push_back(RowRange{0, n});
  }
  if (held_.size() != arch_.table_sizes.size()) throw Error("internal: one row range per table");

  table_offsets_.resize(arch_.table_sizes.size());
  for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
    const RowRange& h = held_[t];
    if (h.begin < 0 || h.rows < 0 || h.begin + h.rows > arch_.table_sizes[t]) throw Error("internal: a row range outside its table");
    table_offsets_[t] = total_rows_;
    total_rows_ += h.rows;
  }
  const auto index_dtype = use_int32_index(total_rows_) ? torch::kInt32 : torch::kInt64;
  offsets_ = torch::tensor(table_offsets_, torch::kInt64).to(index_dtype).to(device_);

  std::vector<int64_t> tril;
  for (int64_t i = 0; i < kVectors; ++i)
    for (int64_t j = 0; j < i; ++j) tril.push_back(i * kVectors + j);
  tril_ = torch::tensor(tril, torch::kInt64).to(device_);

  torch::NoGradGuard no_grad;
  // MLPs: drawn on the CPU so every device starts from the same weights.
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto make_layers = [&](const std::vector<int64_t>& widths, std::vector<torch::Tensor>& ws,
                         std::vector<torch::Tensor>& bs) {
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const int64_t in = widths[l], out = widths[l + 1];
      auto w = torch::empty({out, in}, torch::kFloat32);
      w.normal_(0.0, std::sqrt(2.0 / static_cast<double>(in + out)), gen);
      auto b = torch::empty({out}, torch::kFloat32);
      b.normal_(0.0, std::sqrt(1.0 / static_cast<double>(out)), gen);
      ws.push_back(w.to(device_).set_requires_grad(true));
      bs.push_back(b.to(device_).set_requires_grad(true));
    }
  };

  // Tables.
  const double elem_bytes = emb_elem_bytes(arch_.emb_dtype);
  const double table_bytes = static_cast<double>(total_rows_) * static_cast<double>(d) * elem_bytes;
  const auto tables_what = [&] {
    return "allocating the embedding tables (" + std::to_string(arch_.table_sizes.size()) + " tables, " +
           count_text(static_cast<double>(total_rows_)) + " rows x " + std::to_string(d) + " = " +
           bytes_text(table_bytes) + " of " + emb_type_text(arch_.emb_dtype) + " on " + device_.str() + ")";
  };
  require_capacity(tables_what, table_bytes, device_);
  oom_guard(tables_what, [&] {
    emb = torch::empty({total_rows_, d}, torch::TensorOptions().dtype(emb_scalar_type(arch_.emb_dtype)).device(device_));
    init_tables(seed);
  });
  double mlp_params = 0;
  for (const auto* widths : {&arch_.bot_mlp, &arch_.top_mlp})
    for (size_t l = 0; l + 1 < widths->size(); ++l)
      mlp_params += static_cast<double>((*widths)[l] + 1) * static_cast<double>((*widths)[l + 1]);
  const auto mlp_what = [&] {
    return "allocating the MLP weights (" + count_text(mlp_params) + " parameters = " + bytes_text(mlp_params * 4.0) +
           " of float32 on " + device_.str() + ")";
  };
  require_capacity(mlp_what, mlp_params * 4.0, device_);
  oom_guard(
      mlp_what,
      [&] {
        make_layers(arch_.bot_mlp, bot_w, bot_b);
        make_layers(arch_.top_mlp, top_w, top_b);
      });
}

void Dlrm::init_tables(uint64_t seed) {
  const int64_t d = arch_.emb_dim;
  auto scale_of = [&](size_t t) {
    const int64_t rows = arch_.table_sizes[t];
    return arch_.emb_init_scale > 0 ? arch_.emb_init_scale : std::sqrt(1.0 / static_cast<double>(rows));
  };
#if defined(SLUICE_FUSED_GPU)
  if (device_.is_cuda()) {
    // On the GPU, by the kernel that computes the same values (bit for bit) as init_embedding_rows.
    const c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    const auto elem = arch_.emb_dtype == EmbDtype::kFp16   ? kernels::Elem::kF16
                      : arch_.emb_dtype == EmbDtype::kBf16 ? kernels::Elem::kBF16
                                                           : kernels::Elem::kF32;
    for (size_t t = 0; t < arch_.table_sizes.size(); ++t)
      if (held_[t].rows > 0)
        kernels::init_rows(emb[table_offsets_[t]].data_ptr(), elem, seed, static_cast<int>(t), held_[t].begin,
                           held_[t].rows, d, static_cast<float>(scale_of(t)), stream);
    return;
  }
#endif
  // On the CPU in slices (threads over rows), copied (and rounded to the table's type) where needed.
  const bool direct = device_.is_cpu() && arch_.emb_dtype == EmbDtype::kFp32;
  const int64_t slice_rows = std::max<int64_t>(1, (int64_t{1} << 22) / d);
  torch::Tensor host = direct ? torch::Tensor() : torch::empty({slice_rows, d}, torch::kFloat32);
  for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
    const int64_t rows = held_[t].rows, first = held_[t].begin;
    const double scale = scale_of(t);
    for (int64_t begin = 0; begin < rows; begin += slice_rows) {
      const int64_t n = std::min(slice_rows, rows - begin);
      torch::Tensor dst = emb.narrow(0, table_offsets_[t] + begin, n);
      torch::Tensor buf = direct ? dst : host.narrow(0, 0, n);
      float* p = buf.data_ptr<float>();
      at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
        init_embedding_rows(p + lo * d, seed, static_cast<int>(t), first + begin + lo, hi - lo, d, scale);
      });
      if (!direct) dst.copy_(buf);
    }
  }
}

namespace {
// Bytes of the model's state: the tables (and Adagrad's row-wise state), the MLPs (and their state).
double model_bytes(const Arch& a, OptimizerKind opt, int64_t cap) {
  double rows = 0;
  for (int64_t n : a.table_sizes) rows += static_cast<double>(cap > 0 ? std::min(n, cap) : n);
  double mlp = 0;
  for (const auto* widths : {&a.bot_mlp, &a.top_mlp})
    for (size_t l = 0; l + 1 < widths->size(); ++l)
      mlp += static_cast<double>((*widths)[l] + 1) * static_cast<double>((*widths)[l + 1]);
  const bool adagrad = opt == OptimizerKind::kAdagrad;
  return rows * static_cast<double>(a.emb_dim) * emb_elem_bytes(a.emb_dtype) +
         4.0 * ((adagrad ? rows : 0.0) + mlp * (adagrad ? 2.0 : 1.0));
}
}  // namespace

void check_model_fits(const Arch& a, OptimizerKind opt, const torch::Device& device) {
  double avail = 0;
  std::string where;
  if (device.is_cuda()) {
#if defined(SLUICE_HAVE_CUDA)
    size_t free_b = 0, total_b = 0;
    if (!cuda_batch::device_memory(device.index() < 0 ? 0 : device.index(), &free_b, &total_b)) return;
    // Batches, activations, cuBLAS's workspace and the CUDA context need some of it.
    avail = static_cast<double>(free_b) - std::max(2e9, 0.04 * static_cast<double>(total_b));
    where = device.str() + " has " + bytes_text(static_cast<double>(free_b)) + " free of " +
            bytes_text(static_cast<double>(total_b));
#else
    return;
#endif
  } else {
    avail = device_capacity_bytes(device);
    if (avail <= 0) return;
    where = "this machine has " + bytes_text(avail) + " of memory and swap";
  }
  const double need = model_bytes(a, opt, 0);
  if (need <= avail) return;
  double rows = 0;
  for (int64_t n : a.table_sizes) rows += static_cast<double>(n);
  std::string msg = "out of memory: the model needs " + bytes_text(need) + " (" + count_text(rows) +
                    " embedding rows x " + std::to_string(a.emb_dim) + " " + emb_type_text(a.emb_dtype) +
                    (opt == OptimizerKind::kAdagrad ? " plus Adagrad's row-wise state" : "") + ") and " + where;
  // The largest cap on the table sizes that fits.
  int64_t lo = 0, hi = 0;
  for (int64_t n : a.table_sizes) hi = std::max(hi, n);
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (model_bytes(a, opt, mid) <= avail) lo = mid;
    else hi = mid - 1;
  }
  if (lo >= 1000) msg += "; --max-ind-range " + std::to_string(lo) + " would fit (" + bytes_text(model_bytes(a, opt, lo)) + ")";
  if (a.emb_dtype == EmbDtype::kFp32) {
    Arch half = a;
    half.emb_dtype = EmbDtype::kBf16;
    if (model_bytes(half, opt, 0) <= avail)
      msg += "; half-precision tables (--emb-dtype fp16 or bf16, " + bytes_text(model_bytes(half, opt, 0)) +
             ") would fit";
  }
  if (opt == OptimizerKind::kAdagrad && model_bytes(a, OptimizerKind::kSgd, 0) <= avail)
    msg += "; --optimizer sgd (no optimiser state) would fit";
  throw Error(msg);
}

torch::Tensor Dlrm::flat_ids(const torch::Tensor& sparse, uint64_t id_modulo) const {
  torch::Tensor s = sparse;
  if (id_modulo > 0) s = s.remainder(static_cast<int64_t>(id_modulo));
  if (s.scalar_type() != offsets_.scalar_type()) s = s.to(offsets_.scalar_type());
  return (s + offsets_).reshape({-1});
}

torch::Tensor Dlrm::gather(const torch::Tensor& flat_ids) const {
  torch::NoGradGuard no_grad;
  torch::Tensor rows = emb.index_select(0, flat_ids);
  if (rows.scalar_type() != torch::kFloat32) rows = rows.to(torch::kFloat32);  // exact
  return rows.view({-1, static_cast<int64_t>(kNumSparse), arch_.emb_dim});
}

torch::Tensor Dlrm::mlp(const torch::Tensor& input, const std::vector<torch::Tensor>& w,
                        const std::vector<torch::Tensor>& b, bool relu_last) const {
  const bool bf16 = precision_ == Precision::kBf16;
  torch::Tensor x = input;
  for (size_t l = 0; l < w.size(); ++l) {
    x = bf16 ? at::linear(x, w[l].to(torch::kBFloat16), b[l].to(torch::kBFloat16)) : at::linear(x, w[l], b[l]);
    if (l + 1 < w.size() || relu_last) x = at::relu(x);
  }
  return x;
}

torch::Tensor Dlrm::forward(const torch::Tensor& dense, const torch::Tensor& rows) const {
  const bool bf16 = precision_ == Precision::kBf16;
  const int64_t batch = dense.size(0);
  // Bottom MLP: ReLU after every layer.
  torch::Tensor x = mlp(bf16 ? dense.to(torch::kBFloat16) : dense, bot_w, bot_b, /*relu_last=*/true);
  // Dot interaction: T = [x; e_1..e_26] (B, 27, d), Z = T T^T, the strictly lower triangle.
  torch::Tensor e = bf16 ? rows.to(torch::kBFloat16) : rows;
  torch::Tensor t = at::cat({x.unsqueeze(1), e}, 1);
  torch::Tensor z = at::bmm(t, t.transpose(1, 2));
  torch::Tensor pairs = z.reshape({batch, kVectors * kVectors}).index_select(1, tril_);
  torch::Tensor r = at::cat({x, pairs}, 1);
  // Top MLP: ReLU between layers; the last layer's output is the logit (sigmoid lives in the loss).
  torch::Tensor logit = mlp(r, top_w, top_b, /*relu_last=*/false);
  logit = logit.reshape({batch});
  return bf16 ? logit.to(torch::kFloat32) : logit;
}

std::vector<torch::Tensor> Dlrm::mlp_params() const {
  std::vector<torch::Tensor> p;
  for (size_t l = 0; l < bot_w.size(); ++l) {
    p.push_back(bot_w[l]);
    p.push_back(bot_b[l]);
  }
  for (size_t l = 0; l < top_w.size(); ++l) {
    p.push_back(top_w[l]);
    p.push_back(top_b[l]);
  }
  return p;
}

std::vector<std::string> Dlrm::mlp_param_names() const {
  std::vector<std::string> n;
  for (size_t l = 0; l < bot_w.size(); ++l) {
    n.push_back("bot." + std::to_string(l) + ".weight");
    n.push_back("bot." + std::to_string(l) + ".bias");
  }
  for (size_t l = 0; l < top_w.size(); ++l) {
    n.push_back("top." + std::to_string(l) + ".weight");
    n.push_back("top." + std::to_string(l) + ".bias");
  }
  return n;
}

}  // namespace sluice::train
