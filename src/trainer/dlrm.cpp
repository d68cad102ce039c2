// The DLRM model, its optimisers and its checkpoint files.
#include "trainer/dlrm.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"

namespace sluice::train {

namespace {

constexpr int64_t kVectors = 1 + kNumSparse;  // the bottom output and the 26 embeddings

bool use_int32_index(int64_t total_rows) { return total_rows < std::numeric_limits<int32_t>::max(); }

}  // namespace

// ---- model --------------------------------------------------------------------------------------

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
  if (device_.is_cpu()) {
    emb = torch::empty({total_rows_, d}, torch::kFloat32);
    at::Generator egen = at::detail::createCPUGenerator(seed + 1);
    for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
      const double a = std::sqrt(1.0 / static_cast<double>(arch_.table_sizes[t]));
      emb.narrow(0, table_offsets_[t], arch_.table_sizes[t]).uniform_(-a, a, egen);
    }
  } else {
    torch::cuda::manual_seed(seed + 1);
    emb = torch::empty({total_rows_, d}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    for (size_t t = 0; t < arch_.table_sizes.size(); ++t) {
      const double a = std::sqrt(1.0 / static_cast<double>(arch_.table_sizes[t]));
      emb.narrow(0, table_offsets_[t], arch_.table_sizes[t]).uniform_(-a, a);
    }
  }
  make_layers(arch_.bot_mlp, bot_w, bot_b);
  make_layers(arch_.top_mlp, top_w, top_b);
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
    for (const auto& p : model.mlp_params()) mlp_state.push_back(torch::zeros_like(p));
    emb_state = torch::zeros({model.total_rows()}, model.emb.options());
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

class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot write checkpoint " + path + ": " + errno_text());
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(const void* p, size_t n, Crc* crc) {
    if (crc) crc->update(p, n);
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw Error("cannot write checkpoint " + path_ + ": " + errno_text());
      }
      c += w;
      n -= static_cast<size_t>(w);
    }
  }
  void sync_and_close() {
    if (::fsync(fd_) != 0) throw Error("cannot sync checkpoint " + path_ + ": " + errno_text());
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw Error("cannot close checkpoint " + path_ + ": " + errno_text());
  }

 private:
  std::string path_;
  int fd_ = -1;
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

std::string dirname_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

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

  const std::string tmp = path + ".tmp";
  {
    OutFile out(tmp);
    Crc crc;
    const uint64_t json_len = json.size();
    out.write(kMagic, sizeof kMagic, &crc);
    out.write(&kVersion, sizeof kVersion, &crc);
    out.write(&json_len, sizeof json_len, &crc);
    out.write(json.data(), json.size(), &crc);
    torch::NoGradGuard no_grad;
    for (const auto& nt : tensors) {
      const torch::Tensor flat = nt.tensor.detach().contiguous().reshape({-1});
      for (int64_t begin = 0; begin < flat.numel(); begin += kChunkElems) {
        const int64_t n = std::min(kChunkElems, flat.numel() - begin);
        const torch::Tensor chunk = flat.narrow(0, begin, n).to(torch::kCPU).contiguous();
        out.write(chunk.data_ptr<float>(), static_cast<size_t>(n) * 4, &crc);
      }
    }
    const uint32_t sum = crc.value();
    out.write(&sum, sizeof sum, nullptr);
    out.write(kEndMagic, sizeof kEndMagic, nullptr);
    out.sync_and_close();
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error("cannot rename " + tmp + " to " + path + ": " + errno_text());
  // Make the rename itself durable.
  const int dfd = ::open(dirname_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
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
