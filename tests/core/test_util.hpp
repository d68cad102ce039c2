// Shared helpers of the core tests: temporary directories, whole-file I/O, running the CLI, a
// line-by-line reference of the engine built on parse_row_reference, and random Criteo rows.
#pragma once

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu/cpu_engine.hpp"
#include "sluice/engine.hpp"
#include "sluice/ops.hpp"

namespace sluice_test {

namespace fs = std::filesystem;

// Under AddressSanitizer (the test command's second build, where these tests run several times
// slower) the exhaustive loops take every kSampled-th case, a different share per variant; the
// optimised build runs every case.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr size_t kSampled = 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr size_t kSampled = 3;
#else
inline constexpr size_t kSampled = 1;
#endif
#else
inline constexpr size_t kSampled = 1;
#endif

inline std::string sample_path() { return std::string(SLUICE_TEST_DATA) + "/criteo_sample_200.tsv"; }

// A fresh directory under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = base() / ("sluice-" + tag + "-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(counter++) + "-" + std::to_string(rd() % 100000));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

  // $SLUICE_TEST_TMPDIR, else /dev/shm when usable (outputs are fsynced: a RAM file system keeps
  // that cheap), else the system temp dir.
  static fs::path base() {
    static const fs::path b = [] {
      if (const char* e = std::getenv("SLUICE_TEST_TMPDIR"); e && *e) return fs::path(e);
      std::error_code ec;
      if (fs::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK | X_OK) == 0) return fs::path("/dev/shm");
      return fs::temp_directory_path();
    }();
    return b;
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f.good()) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_gz(const std::string& path, const std::string& bytes) {
  gzFile g = gzopen(path.c_str(), "wb6");
  if (!g) throw std::runtime_error("cannot gzopen " + path);
  size_t off = 0;
  while (off < bytes.size()) {
    const unsigned n = unsigned(std::min<size_t>(bytes.size() - off, 1 << 20));
    if (gzwrite(g, bytes.data() + off, n) != int(n)) throw std::runtime_error("gzwrite failed");
    off += n;
  }
  if (gzclose(g) != Z_OK) throw std::runtime_error("gzclose failed");
}

// Sorted names of the entries directly inside dir.
inline std::set<std::string> list_dir(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Files under dir (recursively), relative path -> contents.
inline std::vector<std::pair<std::string, std::string>> read_tree(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.emplace_back(fs::relative(e.path(), dir).string(), read_file(e.path().string()));
  std::sort(out.begin(), out.end());
  return out;
}

// ---- running the CLI ----------------------------------------------------------------------------

struct CmdResult {
  int exit_code = -1;  // the process's exit status, or -1 when it did not exit normally
  std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

// Runs `sluice ARGS` (args are passed through the shell verbatim: quote them with shell_quote).
inline CmdResult run_sluice(const std::string& args, const TempDir& scratch) {
  static std::atomic<int> n{0};
  const int k = n++;
  const std::string out = scratch / ("cmd" + std::to_string(k) + ".out");
  const std::string err = scratch / ("cmd" + std::to_string(k) + ".err");
  const std::string cmd = shell_quote(SLUICE_BINARY) + " " + args + " >" + shell_quote(out) + " 2>" + shell_quote(err) + " </dev/null";
  const int st = std::system(cmd.c_str());
  CmdResult r;
  r.exit_code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

// ---- reference of the engine --------------------------------------------------------------------

// What the engine should produce for a whole TSV text, computed one line at a time with the scalar
// reference and the transforms of ops.hpp.
struct Expected {
  std::vector<int32_t> labels;
  std::vector<float> dense;        // ln(x+1) of Neg2Zero(x)
  std::vector<int32_t> dense_int;  // clamped ints
  std::vector<uint32_t> sparse;    // after modulo
  struct Bad {
    uint64_t line;
    sluice::RowError err;
    int field;
  };
  std::vector<Bad> bad;
  int64_t rows() const { return int64_t(labels.size()); }
};

// Lines of a text as the contract defines them: '\n' ends a line, the last line may lack it.
inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

inline Expected reference_parse(const std::string& text, uint64_t max_ind_range) {
  Expected x;
  const auto lines = split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    sluice::RawRow r{};
    int field = -1;
    const std::string& l = lines[i];
    const sluice::RowError err = sluice::parse_row_reference(l.data(), l.data() + l.size(), &r, &field);
    if (err != sluice::RowError::kOk) {
      x.bad.push_back({i + 1, err, field});
      continue;
    }
    x.labels.push_back(r.label);
    for (int k = 0; k < sluice::kNumDense; ++k) {
      x.dense.push_back(sluice::dense_value(r.ints[k]));
      x.dense_int.push_back(sluice::clamp_dense_int32(r.ints[k]));
    }
    for (int k = 0; k < sluice::kNumSparse; ++k) x.sparse.push_back(sluice::apply_modulo(r.cats[k], max_ind_range));
  }
  return x;
}

// All chunks of a run, concatenated in delivery order.
struct Collected {
  std::vector<int32_t> labels;
  std::vector<float> dense;
  std::vector<int32_t> dense_int;
  std::vector<uint32_t> sparse;
  std::vector<uint64_t> first_rows;  // ChunkView::first_row of each delivered chunk
  int64_t rows = 0;
  size_t chunks = 0;
  // Host chunks only (device chunks are copied to the host by the caller first).
  void add(const sluice::ChunkView& c) {
    const size_t n = size_t(c.rows);
    first_rows.push_back(c.first_row);
    labels.insert(labels.end(), c.labels, c.labels + n);
    if (c.dense) dense.insert(dense.end(), c.dense, c.dense + n * sluice::kNumDense);
    if (c.dense_int) dense_int.insert(dense_int.end(), c.dense_int, c.dense_int + n * sluice::kNumDense);
    sparse.insert(sparse.end(), c.sparse, c.sparse + n * sluice::kNumSparse);
    rows += c.rows;
    ++chunks;
  }
};

// Runs the named engine ("cpu" unless given) over files and collects every chunk.
inline Collected run_engine(const sluice::EngineOptions& o, const std::vector<std::string>& inputs,
                            sluice::EngineStats* stats = nullptr, const std::string& engine_name = "cpu") {
  std::unique_ptr<sluice::Engine> engine = sluice::make_engine(engine_name, o);
  Collected c;
  sluice::EngineStats s = sluice::run_files(*engine, inputs, [&](const sluice::ChunkView& ch) {
    c.add(ch);
    return true;
  });
  if (stats) *stats = s;
  return c;
}

// Bitwise float comparison (so that -0.0 vs 0.0 or NaNs would be caught too).
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// ---- random rows ---------------------------------------------------------------------------------

// Random well-formed Criteo rows: missing fields, negatives, big and huge ints (up to the int64
// limits), leading zeros, short and 8-digit hex in mixed case. No line terminator.
class RowGen {
 public:
  explicit RowGen(uint64_t seed) : rng_(seed) {}

  std::string label() {
    switch (pick(4)) {
      case 0: return "";
      case 1: return "0";
      default: return "1";
    }
  }
  std::string integer() {
    switch (pick(12)) {
      case 0: case 1: return "";
      case 2: return "-" + std::to_string(pick(1000));
      case 3: return std::to_string(pick(1u << 20) + (uint64_t(1) << 24));
      case 4: return std::to_string(rng_() >> (1 + pick(63)));  // any size up to 2^63 - 1
      case 5: return "-9223372036854775808";
      case 6: return "9223372036854775807";
      case 7: return "00" + std::to_string(pick(100));
      case 8: return "-0";
      default: return std::to_string(pick(20000));
    }
  }
  std::string hex() {
    static const char* kDigits = "0123456789abcdefABCDEF";
    const int n = pick(10) == 0 ? 0 : 1 + pick(8);
    std::string s;
    for (int i = 0; i < n; ++i) s += kDigits[pick(22)];
    return s;
  }
  // One well-formed row.
  std::string row() {
    std::string s = label();
    for (int i = 0; i < sluice::kNumDense; ++i) {
      s += '\t' + integer();
    }
    for (int j = 0; j < sluice::kNumSparse; ++j) s += '\t' + hex();
    return s;
  }
  // A text of `rows` rows, each ended by "\n" or "\r\n", the last one optionally unterminated.
  std::string text(int rows, bool final_newline) {
    std::string t;
    for (int r = 0; r < rows; ++r) {
      t += row();
      if (r + 1 < rows || final_newline) t += pick(4) == 0 ? "\r\n" : "\n";
    }
    return t;
  }
  int pick(uint64_t n) { return int(rng_() % n); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

// Replaces field f (0-based) of a well-formed row with `value`.
inline std::string with_field(const std::string& row, int f, const std::string& value) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    const size_t t = row.find('\t', start);
    fields.push_back(row.substr(start, t == std::string::npos ? std::string::npos : t - start));
    if (t == std::string::npos) break;
    start = t + 1;
  }
  fields.at(size_t(f)) = value;
  std::string s;
  for (size_t i = 0; i < fields.size(); ++i) s += (i ? "\t" : "") + fields[i];
  return s;
}

// ---- malformed lines -------------------------------------------------------------------------

struct BadKind {
  const char* name;
  // Turns a good row into a bad line.
  std::string (*make)(const std::string& good);
};

inline const BadKind kBadKinds[] = {
    {"plus sign", [](const std::string& g) { return with_field(g, 3, "+5"); }},
    {"decimal point", [](const std::string& g) { return with_field(g, 13, "1.5"); }},
    {"trailing junk", [](const std::string& g) { return with_field(g, 1, "12x"); }},
    {"lone minus", [](const std::string& g) { return with_field(g, 6, "-"); }},
    {"double minus", [](const std::string& g) { return with_field(g, 2, "--1"); }},
    {"int overflow", [](const std::string& g) { return with_field(g, 9, "9223372036854775808"); }},
    {"int underflow", [](const std::string& g) { return with_field(g, 10, "-9223372036854775809"); }},
    {"nine hex digits", [](const std::string& g) { return with_field(g, 20, "123456789"); }},
    {"bad hex", [](const std::string& g) { return with_field(g, 39, "0x1"); }},
    {"label 2", [](const std::string& g) { return with_field(g, 0, "2"); }},
    {"NUL byte", [](const std::string& g) { return with_field(g, 17, std::string("ab\0cd", 5)); }},
    {"39 fields", [](const std::string& g) { return g.substr(0, g.rfind('\t')); }},
    {"41 fields", [](const std::string& g) { return g + "\t1"; }},
    {"empty line", [](const std::string&) { return std::string(); }},
    {"CR only", [](const std::string&) { return std::string("\r"); }},
};

// A text of `n` good rows with bad lines at the given 1-based line numbers; also returns the text
// without those lines.
inline void make_texts(uint64_t seed, int n, const std::map<int, const BadKind*>& bad, bool final_newline, std::string* with_bad,
                std::string* without) {
  RowGen gen(seed);
  with_bad->clear();
  without->clear();
  for (int line = 1; line <= n; ++line) {
    const std::string good = gen.row();
    const std::string eol = (line < n || final_newline) ? (gen.pick(3) == 0 ? "\r\n" : "\n") : "";
    auto it = bad.find(line);
    if (it != bad.end()) {
      *with_bad += it->second->make(good) + eol;
    } else {
      *with_bad += good + eol;
      *without += good + eol;
    }
  }
  // Removing the last line leaves the new last line's terminator in place; both are valid texts.
}

}  // namespace sluice_test
