// The DLRM model, its optimisers and its checkpoint files.
#include "trainer/dlrm.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <zlib.h>

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/batch_copy.hpp"
#endif

namespace sluice::train {

namespace {

constexpr int64_t kVectors = 1 + kNumSparse;  // the bottom output and the 26 embeddings

bool use_int32_index(int64_t total_rows) { return total_rows < std::numeric_limits<int32_t>::max(); }

std::string fixed(double v, int decimals) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

// Three significant digits at most: 2.16, 33.8, 512.
std::string short_number(double v) { return fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0); }

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---- messages -----------------------------------------------------------------------------------

std::string count_text(double n) {
  if (n < 1e3) return fixed(n, 0);
  if (n < 1e6) return short_number(n / 1e3) + " k";
  if (n < 1e9) return short_number(n / 1e6) + " M";
  if (n < 1e12) return short_number(n / 1e9) + " G";
  return short_number(n / 1e12) + " T";
}

std::string bytes_text(double b) {
  if (b < 1e3) return fixed(b, 0) + " bytes";
  if (b < 1e6) return short_number(b / 1e3) + " kB";
  if (b < 1e9) return short_number(b / 1e6) + " MB";
  if (b < 1e12) return short_number(b / 1e9) + " GB";
  return short_number(b / 1e12) + " TB";
}

std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(std::llround(s));
  char b[64];
  if (t < 60) std::snprintf(b, sizeof b, "%llds", t);
  else if (t < 3600) std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  else if (t < 86400) std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else std::snprintf(b, sizeof b, "%lldd%02lldh", t / 86400, t / 3600 % 24);
  return b;
}

bool is_out_of_memory(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  const std::string m = e.what_without_backtrace();
  return contains(m, "out of memory") || contains(m, "can't allocate memory") ||
         contains(m, "not enough memory") || contains(m, "Cannot allocate memory");
}

std::string torch_message(const c10::Error& e, bool first_line) {
  std::string m = e.what_without_backtrace();
  // Enforce failures start with "[enforce fail at file.cpp:75] err == 0. ": the reader needs the rest.
  if (m.rfind("[enforce fail at ", 0) == 0) {
    const size_t end = m.find("] ");
    const size_t dot = end == std::string::npos ? end : m.find(". ", end);
    if (dot != std::string::npos) m = m.substr(dot + 2);
  }
  if (first_line) {
    const size_t nl = m.find('\n');
    if (nl != std::string::npos) m.resize(nl);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// ---- model --------------------------------------------------------------------------------------

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

void init_embedding_rows(float* out, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d,
                         double scale) {
  const uint64_t key = splitmix64(splitmix64(seed + 1) ^ (0x5851F42D4C957F2Dull * static_cast<uint64_t>(table + 1)));
  const float a = static_cast<float>(scale);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t row_key = splitmix64(key ^ static_cast<uint64_t>(first_row + r));
    for (int64_t j = 0; j < d; ++j) {
      // 24 random bits -> u in [0, 1) exactly representable; the value a * (2u - 1) in [-a, a).
      const uint64_t h = splitmix64(row_key + static_cast<uint64_t>(j));
      const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
      out[r * d + j] = a * (2.0f * u - 1.0f);
    }
  }
}

Dlrm::Dlrm(const Arch& arch, uint64_t seed, torch::Device device, Precision precision)
    : arch_(arch), device_(device), precision_(precision) {
  validate_arch(arch_);
  const int64_t d = arch_.emb_dim;

  table_offsets_.resize(arch_.table_sizes.size());
  for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
    table_offsets_[t] = total_rows_;
    total_rows_ += arch_.table_sizes[t];
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
  const auto tables_what = [&] {
    return "allocating the embedding tables (" + std::to_string(arch_.table_sizes.size()) + " tables, " +
           count_text(static_cast<double>(total_rows_)) + " rows x " + std::to_string(d) + " = " +
           bytes_text(static_cast<double>(total_rows_) * static_cast<double>(d) * 4.0) + " of float32 on " +
           device_.str() + ")";
  };
  require_capacity(tables_what, static_cast<double>(total_rows_) * static_cast<double>(d) * 4.0, device_);
  oom_guard(tables_what, [&] {
    emb = torch::empty({total_rows_, d}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    // Rows are made on the CPU in slices (threads over rows) and copied: the same weights on every device.
    const int64_t slice_rows = std::max<int64_t>(1, (int64_t{1} << 22) / d);
    torch::Tensor host = device_.is_cpu() ? torch::Tensor() : torch::empty({slice_rows, d}, torch::kFloat32);
    for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
      const int64_t rows = arch_.table_sizes[t];
      const double scale = arch_.emb_init_scale > 0 ? arch_.emb_init_scale : std::sqrt(1.0 / static_cast<double>(rows));
      for (int64_t begin = 0; begin < rows; begin += slice_rows) {
        const int64_t n = std::min(slice_rows, rows - begin);
        torch::Tensor dst = emb.narrow(0, table_offsets_[t] + begin, n);
        torch::Tensor buf = device_.is_cpu() ? dst : host.narrow(0, 0, n);
        float* p = buf.data_ptr<float>();
        at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
          init_embedding_rows(p + lo * d, seed, static_cast<int>(t), begin + lo, hi - lo, d, scale);
        });
        if (!device_.is_cpu()) dst.copy_(buf);
      }
    }
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
  return 4.0 * (rows * static_cast<double>(a.emb_dim) + (adagrad ? rows : 0.0) + mlp * (adagrad ? 2.0 : 1.0));
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
                    " embedding rows x " + std::to_string(a.emb_dim) + " float32" +
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
  if (opt == OptimizerKind::kAdagrad && model_bytes(a, OptimizerKind::kSgd, 0) <= avail)
    msg += "; --optimizer sgd (no optimiser state) would fit";
  throw Error(msg);
}

double device_capacity_bytes(const torch::Device& device) {
  if (device.is_cuda()) {
#if defined(SLUICE_HAVE_CUDA)
    size_t free_b = 0, total_b = 0;
    if (cuda_batch::device_memory(device.index() < 0 ? 0 : device.index(), &free_b, &total_b))
      return static_cast<double>(total_b);
#endif
    return 0;
  }
  // Physical memory and swap, and the address-space limit when one is set.
  double total = 0;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kb = 0;
    while (std::fscanf(f, "%63s %llu kB", key, &kb) == 2) {
      if (std::strcmp(key, "MemTotal:") == 0 || std::strcmp(key, "SwapTotal:") == 0) total += double(kb) * 1024.0;
    }
    std::fclose(f);
  }
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    total = total > 0 ? std::min(total, double(rl.rlim_cur)) : double(rl.rlim_cur);
  }
  return total;
}

torch::Tensor Dlrm::flat_ids(const torch::Tensor& sparse, uint64_t id_modulo) const {
  torch::Tensor s = sparse;
  if (id_modulo > 0) s = s.remainder(static_cast<int64_t>(id_modulo));
  if (s.scalar_type() != offsets_.scalar_type()) s = s.to(offsets_.scalar_type());
  return (s + offsets_).reshape({-1});
}

torch::Tensor Dlrm::gather(const torch::Tensor& flat_ids) const {
  torch::NoGradGuard no_grad;
  return emb.index_select(0, flat_ids).view({-1, static_cast<int64_t>(kNumSparse), arch_.emb_dim});
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

// ---- optimisers ---------------------------------------------------------------------------------

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
          emb_state = torch::zeros({model.total_rows()}, model.emb.options());
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

// ---- checkpoint files ---------------------------------------------------------------------------

namespace {

constexpr char kMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'C', 'K'};
constexpr char kEndMagic[8] = {'S', 'L', 'C', 'K', 'E', 'N', 'D', '\0'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderFixed = 8 + 4 + 8;
constexpr uint64_t kTrailer = 4 + 8;
constexpr int64_t kChunkElems = int64_t{1} << 22;  // 16 MiB of float32 per transfer

std::string errno_text() { return std::strerror(errno); }

class Crc {
 public:
  void update(const void* p, size_t n) {
    const auto* b = static_cast<const Bytef*>(p);
    while (n > 0) {
      const uInt k = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      crc_ = crc32(crc_, b, k);
      b += k;
      n -= k;
    }
  }
  uint32_t value() const { return static_cast<uint32_t>(crc_); }

 private:
  uLong crc_ = crc32(0L, Z_NULL, 0);
};

class InFile {
 public:
  explicit InFile(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw Error("cannot open checkpoint " + path + ": " + errno_text());
  }
  ~InFile() {
    if (f_) std::fclose(f_);
  }
  uint64_t size() {
    if (std::fseek(f_, 0, SEEK_END) != 0) throw Error("cannot seek in checkpoint " + path_);
    const long s = std::ftell(f_);
    if (s < 0 || std::fseek(f_, 0, SEEK_SET) != 0) throw Error("cannot seek in checkpoint " + path_);
    return static_cast<uint64_t>(s);
  }
  void read(void* p, size_t n, Crc* crc) {
    if (std::fread(p, 1, n, f_) != n)
      throw Error("checkpoint " + path_ + " is truncated (unexpected end of file)");
    if (crc) crc->update(p, n);
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace

void write_checkpoint(const std::string& path, nlohmann::json meta, const std::vector<NamedTensor>& tensors) {
  uint64_t offset = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& nt : tensors) {
    if (nt.tensor.scalar_type() != torch::kFloat32)
      throw Error("internal: checkpoint tensor " + nt.name + " is not float32");
    const uint64_t nbytes = static_cast<uint64_t>(nt.tensor.numel()) * 4;
    list.push_back({{"name", nt.name}, {"dtype", "float32"}, {"shape", nt.tensor.sizes().vec()},
                    {"offset", offset}, {"nbytes", nbytes}});
    offset += nbytes;
  }
  meta["tensors"] = list;
  meta["data_bytes"] = offset;
  const std::string json = meta.dump();

  // A hidden temporary sibling, renamed over `path` only once complete and synced: until then the
  // previous checkpoint stays as it was, and on any failure the temporary file is removed.
  FileWriter::Options wo;
  wo.writeback_every = uint64_t{64} << 20;  // start write-back early: the final fsync waits less
  AtomicFile out(path, wo);
  Crc crc;
  auto put = [&](const void* p, size_t n, bool sum) {
    if (sum) crc.update(p, n);
    out.write(p, n);
  };
  const uint64_t json_len = json.size();
  put(kMagic, sizeof kMagic, true);
  put(&kVersion, sizeof kVersion, true);
  put(&json_len, sizeof json_len, true);
  put(json.data(), json.size(), true);
  torch::NoGradGuard no_grad;
  for (const auto& nt : tensors) {
    const torch::Tensor flat = nt.tensor.detach().contiguous().reshape({-1});
    for (int64_t begin = 0; begin < flat.numel(); begin += kChunkElems) {
      const int64_t n = std::min(kChunkElems, flat.numel() - begin);
      const torch::Tensor chunk = flat.narrow(0, begin, n).to(torch::kCPU).contiguous();
      put(chunk.data_ptr<float>(), static_cast<size_t>(n) * 4, true);
    }
  }
  const uint32_t sum = crc.value();
  put(&sum, sizeof sum, false);
  put(kEndMagic, sizeof kEndMagic, false);
  out.commit();
}

CheckpointHeader read_checkpoint_header(const std::string& path) {
  CheckpointHeader h;
  h.path = path;
  InFile in(path);
  h.file_size = in.size();
  const std::string corrupt = "checkpoint " + path + " is corrupt or truncated: ";
  if (h.file_size < kHeaderFixed + kTrailer)
    throw Error(corrupt + "only " + std::to_string(h.file_size) + " bytes");
  char magic[8];
  uint32_t version = 0;
  uint64_t json_len = 0;
  in.read(magic, sizeof magic, nullptr);
  if (std::memcmp(magic, kMagic, sizeof magic) != 0)
    throw Error("checkpoint " + path + " is not a sluice checkpoint (bad magic bytes)");
  in.read(&version, sizeof version, nullptr);
  if (version != kVersion)
    throw Error("checkpoint " + path + " has format version " + std::to_string(version) + " (this build reads " +
                std::to_string(kVersion) + "); it may be corrupt");
  in.read(&json_len, sizeof json_len, nullptr);
  if (json_len > h.file_size - kHeaderFixed - kTrailer)
    throw Error(corrupt + "its header claims " + std::to_string(json_len) + " bytes of metadata");
  std::string json(json_len, '\0');
  in.read(json.data(), json.size(), nullptr);
  try {
    h.meta = nlohmann::json::parse(json);
    h.data_offset = kHeaderFixed + json_len;
    const uint64_t data_bytes = h.meta.at("data_bytes").get<uint64_t>();
    const uint64_t expected = h.data_offset + data_bytes + kTrailer;
    if (expected != h.file_size)
      throw Error(corrupt + "expected " + std::to_string(expected) + " bytes, the file has " +
                  std::to_string(h.file_size));
    uint64_t offset = 0;
    for (const auto& t : h.meta.at("tensors")) {
      uint64_t elems = 1;
      for (const auto& d : t.at("shape")) {
        const int64_t v = d.get<int64_t>();
        if (v < 0) throw Error(corrupt + "negative tensor dimension");
        elems *= static_cast<uint64_t>(v);
      }
      if (t.at("dtype").get<std::string>() != "float32" || t.at("nbytes").get<uint64_t>() != elems * 4 ||
          t.at("offset").get<uint64_t>() != offset)
        throw Error(corrupt + "inconsistent tensor table");
      offset += elems * 4;
    }
    if (offset != data_bytes) throw Error(corrupt + "inconsistent tensor table");
  } catch (const nlohmann::json::exception& e) {
    throw Error(corrupt + "bad metadata (" + e.what() + ")");
  }
  return h;
}

void read_checkpoint_tensors(
    const CheckpointHeader& h,
    const std::function<torch::Tensor(const std::string&, const std::vector<int64_t>&)>& dest) {
  InFile in(h.path);
  Crc crc;
  std::vector<char> head(h.data_offset);
  in.read(head.data(), head.size(), &crc);
  torch::NoGradGuard no_grad;
  torch::Tensor staging = torch::empty({kChunkElems}, torch::kFloat32);
  for (const auto& t : h.meta.at("tensors")) {
    const std::string name = t.at("name").get<std::string>();
    const std::vector<int64_t> shape = t.at("shape").get<std::vector<int64_t>>();
    torch::Tensor target = dest(name, shape);
    if (target.defined() && target.sizes().vec() != shape)
      throw Error("internal: checkpoint tensor " + name + " has an unexpected shape");
    torch::Tensor flat = target.defined() ? target.view({-1}) : torch::Tensor();
    int64_t total = 1;
    for (int64_t d : shape) total *= d;
    for (int64_t begin = 0; begin < total; begin += kChunkElems) {
      const int64_t n = std::min(kChunkElems, total - begin);
      in.read(staging.data_ptr<float>(), static_cast<size_t>(n) * 4, &crc);
      if (flat.defined()) flat.narrow(0, begin, n).copy_(staging.narrow(0, 0, n));
    }
  }
  uint32_t stored = 0;
  char end[8];
  in.read(&stored, sizeof stored, nullptr);
  in.read(end, sizeof end, nullptr);
  if (std::memcmp(end, kEndMagic, sizeof end) != 0 || stored != crc.value())
    throw Error("checkpoint " + h.path + " is corrupt (checksum mismatch)");
}

std::map<std::string, torch::Tensor> load_checkpoint_tensors(const std::string& path) {
  const CheckpointHeader h = read_checkpoint_header(path);
  std::map<std::string, torch::Tensor> out;
  read_checkpoint_tensors(h, [&](const std::string& name, const std::vector<int64_t>& shape) {
    auto t = torch::empty(shape, torch::kFloat32);
    out[name] = t;
    return t;
  });
  return out;
}

std::vector<NamedTensor> state_tensors(const Dlrm& model, const Optimizer& opt) {
  std::vector<NamedTensor> out;
  out.push_back({"emb", model.emb});
  const auto params = model.mlp_params();
  const auto names = model.mlp_param_names();
  for (size_t i = 0; i < params.size(); ++i) out.push_back({names[i], params[i]});
  if (opt.kind() == OptimizerKind::kAdagrad) {
    out.push_back({"adagrad.emb", opt.emb_state});
    for (size_t i = 0; i < opt.mlp_state.size(); ++i) out.push_back({"adagrad." + names[i], opt.mlp_state[i]});
  }
  return out;
}

}  // namespace sluice::train
