// sluice info: the summary of a prepared dataset, and a check of its files against the manifest.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "sluice/engine.hpp"
#include "sluice/io.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"

namespace sluice::cli {

namespace {

// Checks that the files a manifest describes are all there and whole: a copy cut short, a file
// lost or damaged, shows here rather than as a crash or wrong batches in training. Each problem
// reads "DIR/file: what is wrong".
class DatasetCheck {
 public:
  explicit DatasetCheck(std::string dir) : dir_(std::move(dir)) {
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  }

  const std::vector<std::string>& problems() const { return problems_; }

  void run(const nlohmann::json& m) {
    const std::string format = m.value("format", "");
    if (format != "npy" && format != "dlrm-bin") {
      problem("manifest.json", "unknown format '" + format + "' (expected npy or dlrm-bin)");
      return;
    }
    uint64_t sum = 0;
    for (const auto& p : m.at("parts")) {
      const std::string name = p.at("name").get<std::string>();
      const uint64_t rows = p.at("rows").get<uint64_t>();
      sum += rows;
      if (format == "npy") check_npy_part(m, name, rows);
      else check_exact_size(name + ".bin", rows * uint64_t(kDlrmBinRowBytes), std::to_string(rows) + " rows of 160 bytes");
    }
    if (sum != m.at("rows").get<uint64_t>())
      problem("manifest.json", "its parts hold " + std::to_string(sum) + " rows, its 'rows' says " +
                                   std::to_string(m.at("rows").get<uint64_t>()));
    const bool has_vocab = m.contains("vocab_id_offset") ||
                           (m.contains("options") && m["options"].value("vocab", "") == "first-seen");
    if (has_vocab) check_vocab(m);
  }

 private:
  void problem(const std::string& file, const std::string& what) { problems_.push_back(dir_ + "/" + file + ": " + what); }
  std::string path(const std::string& file) const { return dir_ + "/" + file; }

  // stat()s a file that must exist as a regular file; false (and a problem) otherwise.
  bool stat_file(const std::string& file, struct stat* st) {
    if (::stat(path(file).c_str(), st) != 0) {
      const int err = errno;
      problem(file, err == ENOENT ? std::string("missing") : std::string("cannot stat: ") + std::strerror(err));
      return false;
    }
    if (!S_ISREG(st->st_mode)) {
      problem(file, "not a regular file");
      return false;
    }
    return true;
  }

  void check_exact_size(const std::string& file, uint64_t want, const std::string& what) {
    struct stat st {};
    if (!stat_file(file, &st)) return;
    const uint64_t have = uint64_t(st.st_size);
    if (have < want)
      problem(file, "truncated: " + std::to_string(have) + " bytes, expected " + std::to_string(want) + " (" + what + ")");
    else if (have > want)
      problem(file, std::to_string(have - want) + " bytes of trailing data: " + std::to_string(have) +
                        " bytes, expected " + std::to_string(want) + " (" + what + ")");
  }

  // An npy file of the given dtype and shape (rows, cols), rows < 0 meaning any; its size must be
  // exactly header + data. Returns the row count of its header, or -1 when it is unusable.
  int64_t check_npy(const std::string& file, NpyType type, int64_t rows, int64_t cols) {
    struct stat st {};
    if (!stat_file(file, &st)) return -1;
    NpyHeader h;
    try {
      h = read_npy_header(path(file));
    } catch (const Error& e) {
      problem(file, without_path(e.what(), path(file)));
      return -1;
    }
    bool ok = true;
    if (h.type != type) {
      problem(file, std::string("dtype ") + npy_descr(h.type) + ", expected " + npy_descr(type));
      ok = false;
    }
    if (h.shape.size() != 2 || h.shape[1] != cols || (rows >= 0 && h.shape[0] != rows)) {
      problem(file, "shape " + shape_text(h.shape) + ", expected (" + (rows >= 0 ? std::to_string(rows) : "n") +
                        ", " + std::to_string(cols) + ")");
      ok = false;
    }
    // read_npy_header() refuses a file shorter than its header says; longer is checked here.
    uint64_t items = 1;
    for (int64_t d : h.shape) items *= uint64_t(d);
    check_exact_size(file, uint64_t(h.data_offset) + items * npy_item_size(h.type), "npy header + data");
    return ok ? h.shape[0] : -1;
  }

  void check_npy_part(const nlohmann::json& m, const std::string& part, uint64_t rows) {
    const std::string dense = m.value("dense_dtype", "float32"), sparse = m.value("sparse_dtype", "int32");
    if (dense != "float32" && dense != "int32") problem("manifest.json", "unknown dense_dtype '" + dense + "'");
    if (sparse != "int32" && sparse != "int64") problem("manifest.json", "unknown sparse_dtype '" + sparse + "'");
    check_npy(part + "_dense.npy", dense == "int32" ? NpyType::kInt32 : NpyType::kFloat32, int64_t(rows), kNumDense);
    check_npy(part + "_sparse.npy", sparse == "int64" ? NpyType::kInt64 : NpyType::kInt32, int64_t(rows), kNumSparse);
    check_npy(part + "_labels.npy", NpyType::kInt32, int64_t(rows), 1);
  }

  // vocab/meta.json and vocab/C1.npy .. C26.npy (uint32 (n, 2)), consistent with each other and
  // with the manifest's vocab_sizes.
  void check_vocab(const nlohmann::json& m) {
    const std::string meta_file = "vocab/meta.json";
    try {
      check_vocab_files(m, meta_file);
    } catch (const nlohmann::json::exception& e) {
      problem(meta_file, std::string("unexpected content: ") + e.what());
    }
  }

  void check_vocab_files(const nlohmann::json& m, const std::string& meta_file) {
    struct stat st {};
    if (!stat_file(meta_file, &st)) return;
    nlohmann::json meta;
    try {
      std::ifstream in(path(meta_file));
      in >> meta;
    } catch (const std::exception& e) {
      problem(meta_file, std::string("bad JSON: ") + e.what());
      return;
    }
    if (!meta.contains("table_sizes") || !meta["table_sizes"].is_array() || meta["table_sizes"].size() != size_t(kNumSparse)) {
      problem(meta_file, "expected 'table_sizes' with " + std::to_string(kNumSparse) + " entries");
      return;
    }
    const auto& sizes = meta["table_sizes"];
    const auto& manifest_sizes = m.at("vocab_sizes");
    const int64_t id_offset = meta.value("id_offset", int64_t(0));
    if (m.contains("vocab_id_offset") && m["vocab_id_offset"].get<int64_t>() != id_offset)
      problem(meta_file, "id_offset " + std::to_string(id_offset) + ", manifest.json says " +
                             std::to_string(m["vocab_id_offset"].get<int64_t>()));
    for (int c = 0; c < kNumSparse; ++c) {
      const std::string col = "C" + std::to_string(c + 1);
      const int64_t size = sizes[size_t(c)].get<int64_t>();
      if (size_t(c) < manifest_sizes.size() && manifest_sizes[size_t(c)].get<int64_t>() != size)
        problem(meta_file, "table size of " + col + " is " + std::to_string(size) + ", manifest.json vocab_sizes says " +
                               std::to_string(manifest_sizes[size_t(c)].get<int64_t>()));
      const std::string file = "vocab/" + col + ".npy";
      const int64_t n = check_npy(file, NpyType::kUint32, -1, 2);
      if (n >= 0 && n + id_offset != size)
        problem(file, std::to_string(n) + " values (ids from " + std::to_string(id_offset) + "), vocab/meta.json says table size " +
                          std::to_string(size));
    }
  }

  static std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }

  // The message of an error about `file` without the file's name (the problem line names it).
  static std::string without_path(std::string msg, const std::string& file) {
    const std::string quoted = "'" + file + "'";
    const size_t at = msg.find(quoted);
    if (at == std::string::npos) return msg;
    size_t from = at;
    for (const char* sep : {" in ", ": ", " "}) {
      const size_t n = std::strlen(sep);
      if (from >= n && msg.compare(from - n, n, sep) == 0) {
        from -= n;
        break;
      }
    }
    msg.erase(from, at + quoted.size() - from);
    return msg;
  }

  std::string dir_;
  std::vector<std::string> problems_;
};

// What this machine runs: the cpu engine's kernels (chosen from the processor at run time), its
// threads, the engines built in and the inflater of gzip inputs.
void print_system() {
  std::printf("cpu kernels  %s\n", cpu_engine_kernels().c_str());
  std::printf("cpu threads  %u\n", std::max(1u, std::thread::hardware_concurrency()));
  std::string engines;
  for (const auto& e : available_engines()) engines += (engines.empty() ? "" : ", ") + e;
  std::printf("engines      %s\n", engines.c_str());
  std::printf("gzip inflate %s\n", gzip_inflater().c_str());
  std::string why;
  const bool gpu = cuda_device_available(&why);
  std::printf("cuda GPU     %s\n", gpu ? "usable" : ("none (" + why + ")").c_str());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto system = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("info", "Summarise a prepared dataset (parts, rows, vocabulary sizes, options) and check its files");
  cmd->add_option("dir", *dir, "A `sluice prep` output directory");
  cmd->add_flag("--json", *as_json, "Print the manifest as JSON");
  cmd->add_flag("--system", *system, "Describe this machine instead: the cpu engine's kernels (chosen from the processor), threads, engines");
  cmd->callback([=] {
    if (*system) {
      print_system();
      return;
    }
    if (dir->empty()) throw CLI::RequiredError("dir");
    const std::string path = *dir + "/manifest.json";
    std::ifstream in(path);
    if (!in) throw Error(path + ": no manifest (is this a `sluice prep` output?)");
    nlohmann::json m;
    try {
      in >> m;
    } catch (const std::exception& e) {
      throw Error(path + ": bad JSON: " + e.what());
    }
    // A manifest too damaged to describe the files fails below like any unexpected content.
    DatasetCheck check(*dir);
    const auto finish = [&](std::FILE* out) {
      try {
        check.run(m);
      } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": unexpected manifest content: " + e.what());
      }
      if (check.problems().empty()) return;
      for (const auto& p : check.problems()) std::fprintf(out, "%s\n", p.c_str());
      std::fflush(out);
      throw Error(std::to_string(check.problems().size()) + " problem(s) found in " + *dir);
    };
    if (*as_json) {
      std::printf("%s\n", m.dump(2).c_str());
      std::fflush(stdout);
      finish(stderr);  // stdout stays the manifest alone
      return;
    }
    try {
      std::printf("dataset   %s\n", dir->c_str());
      std::printf("format    %s (dense %s, sparse %s)\n", m.at("format").get<std::string>().c_str(),
                  m.value("dense_dtype", "?").c_str(), m.value("sparse_dtype", "?").c_str());
      std::printf("rows      %llu (skipped %llu)\n", (unsigned long long)m.at("rows").get<uint64_t>(),
                  (unsigned long long)m.value("rows_skipped", uint64_t(0)));
      std::printf("parts     %zu\n", m.at("parts").size());
      for (const auto& p : m.at("parts"))
        std::printf("  %-16s %12llu rows\n", p.at("name").get<std::string>().c_str(), (unsigned long long)p.at("rows").get<uint64_t>());
      std::printf("vocab sizes");
      uint64_t total = 0;
      int k = 0;
      for (const auto& v : m.at("vocab_sizes")) {
        std::printf("%s C%d=%llu", k % 6 == 0 ? "\n " : "", k + 1, (unsigned long long)v.get<uint64_t>());
        total += v.get<uint64_t>();
        ++k;
      }
      std::printf("\n  total embedding rows: %llu\n", (unsigned long long)total);
      std::printf("options   %s\n", m.at("options").dump().c_str());
      if (!m.value("bad_rows", nlohmann::json::array()).empty()) {
        std::printf("bad rows (first %zu):\n", m["bad_rows"].size());
        for (const auto& b : m["bad_rows"])
          std::printf("  %s:%llu: %s\n", b.at("file").get<std::string>().c_str(),
                      (unsigned long long)b.at("line").get<uint64_t>(), b.at("reason").get<std::string>().c_str());
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(path + ": unexpected manifest content: " + e.what());
    }
    finish(stdout);
  });
}

}  // namespace sluice::cli
