// The checkpoint files: their format, the training state they hold, and how a run's checkpoint is checked
// and resumed.
#include "trainer/checkpoint.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sluice/source.hpp"
#include "trainer/dlrm.hpp"
#include "util/file_writer.hpp"
#include "util/notice.hpp"

namespace sluice::train {

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

namespace {

// The element types a checkpoint holds: float32, and the half types of half-precision tables.
const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return nullptr;
  }
}

bool dtype_of(const std::string& name, torch::ScalarType* t) {
  if (name == "float32") *t = torch::kFloat32;
  else if (name == "float16") *t = torch::kFloat16;
  else if (name == "bfloat16") *t = torch::kBFloat16;
  else return false;
  return true;
}

}  // namespace

void write_checkpoint(const std::string& path, nlohmann::json meta, const std::vector<NamedTensor>& tensors) {
  uint64_t offset = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& nt : tensors) {
    const char* dtype = dtype_name(nt.tensor.scalar_type());
    if (dtype == nullptr) throw Error("internal: checkpoint tensor " + nt.name + " is not float32, float16 or bfloat16");
    const uint64_t nbytes = static_cast<uint64_t>(nt.tensor.numel()) * nt.tensor.element_size();
    list.push_back({{"name", nt.name}, {"dtype", dtype}, {"shape", nt.tensor.sizes().vec()},
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
    const size_t elem = flat.element_size();
    for (int64_t begin = 0; begin < flat.numel(); begin += kChunkElems) {
      const int64_t n = std::min(kChunkElems, flat.numel() - begin);
      const torch::Tensor chunk = flat.narrow(0, begin, n).to(torch::kCPU).contiguous();
      put(chunk.data_ptr(), static_cast<size_t>(n) * elem, true);
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
      torch::ScalarType st;
      if (!dtype_of(t.at("dtype").get<std::string>(), &st)) throw Error(corrupt + "unknown tensor type");
      const uint64_t elem = c10::elementSize(st);
      if (t.at("nbytes").get<uint64_t>() != elems * elem || t.at("offset").get<uint64_t>() != offset)
        throw Error(corrupt + "inconsistent tensor table");
      offset += elems * elem;
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
  for (const auto& t : h.meta.at("tensors")) {
    const std::string name = t.at("name").get<std::string>();
    const std::vector<int64_t> shape = t.at("shape").get<std::vector<int64_t>>();
    torch::ScalarType st = torch::kFloat32;
    dtype_of(t.at("dtype").get<std::string>(), &st);  // checked by read_checkpoint_header
    const torch::Tensor staging = torch::empty({kChunkElems}, st);
    const size_t elem = staging.element_size();
    torch::Tensor target = dest(name, shape);
    if (target.defined() && target.sizes().vec() != shape)
      throw Error("internal: checkpoint tensor " + name + " has an unexpected shape");
    torch::Tensor flat = target.defined() ? target.view({-1}) : torch::Tensor();
    int64_t total = 1;
    for (int64_t d : shape) total *= d;
    for (int64_t begin = 0; begin < total; begin += kChunkElems) {
      const int64_t n = std::min(kChunkElems, total - begin);
      in.read(staging.data_ptr(), static_cast<size_t>(n) * elem, &crc);
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
  std::map<std::string, torch::ScalarType> types;
  for (const auto& t : h.meta.at("tensors")) {
    torch::ScalarType st = torch::kFloat32;
    dtype_of(t.at("dtype").get<std::string>(), &st);
    types[t.at("name").get<std::string>()] = st;
  }
  read_checkpoint_tensors(h, [&](const std::string& name, const std::vector<int64_t>& shape) {
    auto t = torch::empty(shape, types[name]);
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

// ---- a run's checkpoint -------------------------------------------------------------------------

namespace {

std::string list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    // Appended piecewise: `(i ? "," : "") + std::to_string(...)` draws a false -Wrestrict from GCC 12 here.
    if (i) s += ",";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

namespace detail {

nlohmann::json arch_json(const Arch& a) {
  return {{"emb_dim", a.emb_dim},         {"bot_mlp", a.bot_mlp},
          {"top_mlp", a.top_mlp},         {"table_sizes", a.table_sizes},
          {"emb_dtype", emb_dtype_name(a.emb_dtype)}};
}

// Checks that a checkpoint fits the run's model; throws a clear sluice::Error otherwise.
void check_compatible(const CheckpointHeader& h, const TrainOptions& o) {
  const std::string where = "checkpoint " + h.path;
  try {
    const auto& meta = h.meta;
    if (meta.value("format", "") != "sluice-dlrm") throw Error(where + " is not a sluice DLRM checkpoint");
    const auto& a = meta.at("arch");
    const auto sizes = a.at("table_sizes").get<std::vector<int64_t>>();
    if (sizes != o.arch.table_sizes) {
      std::string diff;
      for (size_t t = 0; t < std::min(sizes.size(), o.arch.table_sizes.size()); ++t)
        if (sizes[t] != o.arch.table_sizes[t]) {
          diff = " (first difference: C" + std::to_string(t + 1) + " has " + std::to_string(sizes[t]) +
                 " rows in the checkpoint, " + std::to_string(o.arch.table_sizes[t]) + " in the data)";
          break;
        }
      throw Error(where + " was written for embedding-table sizes " + list_text(sizes) +
                  " but the data has " + list_text(o.arch.table_sizes) + diff);
    }
    const auto d = a.at("emb_dim").get<int64_t>();
    const auto bot = a.at("bot_mlp").get<std::vector<int64_t>>();
    const auto top = a.at("top_mlp").get<std::vector<int64_t>>();
    if (d != o.arch.emb_dim || bot != o.arch.bot_mlp || top != o.arch.top_mlp)
      throw Error(where + " holds a model of embedding size " + std::to_string(d) + ", bottom MLP " +
                  list_text(bot) + ", top MLP " + list_text(top) + "; the options ask for " +
                  std::to_string(o.arch.emb_dim) + ", " + list_text(o.arch.bot_mlp) + ", " +
                  list_text(o.arch.top_mlp));
    // Checkpoints from before half-precision tables hold float32 ones.
    const std::string dtype = a.value("emb_dtype", std::string("fp32"));
    if (dtype != emb_dtype_name(o.arch.emb_dtype))
      throw Error(where + " holds " + dtype + " embedding tables; the options ask for " +
                  emb_dtype_name(o.arch.emb_dtype) + " (resume with --emb-dtype " + dtype + ")");
    const std::string opt = meta.at("optimizer").get<std::string>();
    if (opt != optimizer_name(o.optimizer))
      throw Error(where + " was written by the " + opt + " optimizer; the options ask for " +
                  optimizer_name(o.optimizer));
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " has bad metadata (" + e.what() + ")");
  }
}

Position position_of(const CheckpointHeader& h) {
  Position pos;
  try {
    const auto& s = h.meta.at("position");
    pos.step = s.at("step").get<int64_t>();
    pos.epoch = s.at("epoch").get<int>();
    pos.rows_in_epoch = s.at("rows_in_epoch").get<int64_t>();
    pos.rows_trained = s.at("rows_trained").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint " + h.path + " has bad metadata (" + e.what() + ")");
  }
  return pos;
}

// Versions before the hidden temporary siblings wrote "<checkpoint>.tmp" and renamed it; a run
// killed in between left it behind. It is never read: remove it.
void remove_legacy_temp(const std::string& ckpt_path) {
  const std::string legacy = ckpt_path + ".tmp";
  if (is_regular_file(legacy) && ::unlink(legacy.c_str()) == 0)
    notice("removed '" + legacy + "', a partial checkpoint left behind by an interrupted run");
}

}  // namespace detail

}  // namespace sluice::train
