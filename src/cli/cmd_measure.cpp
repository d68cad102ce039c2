// `sluice measure`: the measurement suite (docs/measurements.md). On the same generated data and
// model, for several batch sizes and dataset sizes, it times five ways to a trained DLRM:
//   1 the CPU-GPU baseline: Python per-line preprocessing to npy, then PyTorch DataLoader training;
//   2 `sluice prep` (cpu engine) offline, then `sluice train`;
//   3 online: raw files -> cpu engine -> training;
//   4 online: raw files -> cuda engine -> GPU training;
//   5 the fpga engine, modelled: its core's simulated cycles at 250 MHz and the PCIe rate measured
//     here, with pipeline 4's training compute time.
// Every run is a child process (this binary for gen/prep/train, python3 where the pipeline is
// Python); GPU utilisation is sampled by `nvidia-smi -lms 100` while each runs. Results go to
// DIR/results.jsonl, DIR/measurements.md and PNG plots (scripts/plot_measure.py).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/validators.hpp"
#include "sluice/engine.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/fs_ops.hpp"

extern char** environ;

namespace sluice::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The files the suite writes into --out; nothing else there is touched.
const char* const kOutputFiles[] = {"results.jsonl", "measurements.md", "time_by_batch.png", "gpu_util.png",
                                    "time_vs_size.png"};

// The fpga core's clock in the seed's shell (Coyote), the rate the modelled row assumes.
constexpr double kFpgaClockHz = 250e6;

struct MeasureOptions {
  std::string out;
  bool quick = false;
  bool overwrite = false;
  bool keep_work = false;
  std::string sizes;        // rows per dataset, comma-separated
  std::string batch_sizes;  // comma-separated
  std::string pipelines = "1,2,3,4,5";
  int sweep_batch = 0;      // the batch size of the dataset-size sweep (0: the middle one)
  int days = 3;
  double cardinality_scale = 0;
  uint64_t seed = 1;
  int fpga_sample_kb = 0;
};

std::vector<int64_t> parse_list(const std::string& s, const char* what) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || x <= 0)
      throw CLI::ValidationError(what, "expected comma-separated positive integers, got '" + s + "'");
    v.push_back(x);
  }
  if (v.empty()) throw CLI::ValidationError(what, "expected at least one value");
  return v;
}

// Plain POSIX calls rather than std::filesystem's: libtorch exports its own copies of those
// (src/util/fs_ops.hpp says why that matters), and the dynamic linker binds them in their place.
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool path_exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}
uint64_t size_of(const std::string& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) throw Error("measure: cannot stat " + p);
  return uint64_t(st.st_size);
}
std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, size_t(n));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of("\r\n");
  if (end == std::string::npos) return "";
  size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// The last line of stdout that is a JSON object.
json last_json(const std::string& text) {
  std::stringstream ss(text);
  std::string line;
  json found;
  while (std::getline(ss, line)) {
    if (line.empty() || line[0] != '{') continue;
    try {
      found = json::parse(line);
    } catch (const json::exception&) {
    }
  }
  return found;
}

double jnum(const json& j, const char* key, double fallback = NAN) {
  if (j.is_object() && j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return fallback;
}

json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// ---- child processes ----------------------------------------------------------------------------

struct ChildResult {
  int exit_code = -1;  // 128 + signal when killed
  double seconds = 0;
  std::string out, err;  // stdout, stderr (as written to their files)
};

pid_t spawn(const std::vector<std::string>& args, int out_fd, int err_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Runs args to completion, stdout and stderr into files under `log_stem` (.out, .err).
ChildResult run_child(const std::vector<std::string>& args, const std::string& log_stem) {
  ChildResult r;
  const std::string out_path = log_stem + ".out", err_path = log_stem + ".err";
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out_fd < 0 || err_fd < 0) throw Error("measure: cannot create " + log_stem + ".out/.err");
  std::string cmd;
  for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
  std::fprintf(stderr, "measure: %s\n", cmd.c_str());
  const auto t0 = Clock::now();
  const pid_t pid = spawn(args, out_fd, err_fd);
  ::close(out_fd);
  ::close(err_fd);
  if (pid < 0) {
    r.exit_code = 127;
    r.err = "cannot run " + args[0];
    return r;
  }
  r.exit_code = wait_child(pid);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  check_interrupt();
  return r;
}

std::string failure(const ChildResult& r) {
  std::string why = last_line(r.err);
  if (why.empty()) why = last_line(r.out);
  return "exit code " + std::to_string(r.exit_code) + (why.empty() ? "" : ": " + why);
}

// GPU utilisation, sampled by `nvidia-smi --query-gpu=utilization.gpu -lms 100` (NVML underneath)
// while a run goes on; each line is stamped with the time it arrived.
class GpuSampler {
 public:
  explicit GpuSampler(bool enabled) {
    if (!enabled) return;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = spawn({"nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms",
                  "100"},
                 fds[1], -1);
    ::close(fds[1]);
    if (pid_ < 0) {
      ::close(fds[0]);
      return;
    }
    fd_ = fds[0];
    t0_ = Clock::now();
    reader_ = std::thread([this] { read_loop(); });
  }
  ~GpuSampler() { stop(); }

  // Stops sampling; returns [seconds since start, percent] pairs.
  std::vector<std::pair<double, double>> stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      wait_child(pid_);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    std::lock_guard<std::mutex> g(mu_);
    return samples_;
  }

 private:
  void read_loop() {
    std::string buf;
    char tmp[512];
    for (;;) {
      const ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      const double t = std::chrono::duration<double>(Clock::now() - t0_).count();
      buf.append(tmp, size_t(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        const std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        char* end = nullptr;
        const double v = std::strtod(line.c_str(), &end);
        if (end != line.c_str()) {
          std::lock_guard<std::mutex> g(mu_);
          samples_.push_back({t, v});
        }
      }
    }
  }
  pid_t pid_ = -1;
  int fd_ = -1;
  Clock::time_point t0_;
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::pair<double, double>> samples_;
};

json samples_json(const std::vector<std::pair<double, double>>& s) {
  json a = json::array();
  for (const auto& [t, v] : s) a.push_back({std::round(t * 1000) / 1000, v});
  return a;
}

double mean_util(const std::vector<std::pair<double, double>>& s) {
  if (s.empty()) return NAN;
  double sum = 0;
  for (const auto& p : s) sum += p.second;
  return sum / double(s.size());
}

// ---- finding the scripts ------------------------------------------------------------------------

std::string find_repo_file(const std::string& rel) {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("SLUICE_SOURCE_DIR")) candidates.push_back(fs::path(env) / rel);
  const fs::path exe = self_exe();
  if (!exe.empty()) {
    candidates.push_back(exe.parent_path() / rel);
    candidates.push_back(exe.parent_path().parent_path() / rel);
    candidates.push_back(exe.parent_path().parent_path() / "share" / "sluice" / rel);
  }
  candidates.push_back(fs::path(__FILE__).parent_path().parent_path().parent_path() / rel);  // the source tree
  for (const auto& c : candidates)
    if (is_file(c.string())) return c.string();
  return "";
}

// The Python that runs a script needing `modules` ("numpy, torch", "matplotlib"): $SLUICE_PYTHON when
// set; else the first of python3 on PATH and the system's /usr/bin/python3 that imports them (a
// version manager's python3 often lacks the distribution's packages); else python3, whose failure the
// caller reports.
std::string python_with(const std::string& modules) {
  if (const char* p = std::getenv("SLUICE_PYTHON"); p && *p) return p;
  static std::mutex mu;
  static std::map<std::string, std::string> found;
  std::lock_guard<std::mutex> g(mu);
  if (auto it = found.find(modules); it != found.end()) return it->second;
  std::string pick = "python3";
  for (const char* cand : {"python3", "/usr/bin/python3"}) {
    const std::string cmd = std::string(cand) + " -c 'import " + modules + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) {
      pick = cand;
      break;
    }
  }
  found[modules] = pick;
  return pick;
}
std::string torch_python() { return python_with("numpy, torch"); }
std::string plot_python() { return python_with("matplotlib"); }

std::string first_line_of(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) {
      const size_t c = line.find(':');
      std::string v = c == std::string::npos ? "" : line.substr(c + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

std::string fmt(double v, int prec) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string fmt_rate(double v) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.0f k", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.1f k", v / 1e3);
  return buf;
}

// ---- the suite ----------------------------------------------------------------------------------

struct Pipeline {
  int id;
  const char* key;
  const char* label;
};

const Pipeline kPipelines[] = {
    {1, "python-dataloader", "1 CPU–GPU baseline: Python per-line prep to npy, PyTorch DataLoader"},
    {2, "sluice-prep", "2 sluice prep (cpu engine) offline, sluice train"},
    {3, "online-cpu", "3 online: raw -> cpu engine -> sluice train"},
    {4, "online-cuda", "4 online: raw -> cuda engine -> GPU training"},
    {5, "fpga-modelled", "5 fpga engine, modelled (core cycles at 250 MHz, PCIe rate measured)"},
};

class Suite {
 public:
  explicit Suite(MeasureOptions o) : o_(std::move(o)) {}
  void run();

 private:
  std::string self() const { return exe_; }
  json base_row(const Pipeline& p, int64_t rows, int64_t batch) const {
    json r;
    r["type"] = "run";
    r["pipeline"] = p.id;
    r["key"] = p.key;
    r["label"] = p.label;
    r["rows"] = rows;
    r["batch_size"] = batch;
    r["modelled"] = p.id == 5;
    return r;
  }
  void skip(const Pipeline& p, int64_t rows, int64_t batch, const std::string& why) {
    json r = base_row(p, rows, batch);
    r["status"] = "skipped";
    r["reason"] = why;
    add(r);
  }
  void add(const json& r) {
    if (r.value("status", "") == "failed") ++failed_;
    std::fprintf(stderr, "measure: pipeline %d, %lld rows, batch %lld: %s%s\n", r["pipeline"].get<int>(),
                 (long long)r["rows"].get<int64_t>(), (long long)r["batch_size"].get<int64_t>(),
                 r["status"].get<std::string>().c_str(),
                 r.contains("reason") ? (" (" + r["reason"].get<std::string>() + ")").c_str() : "");
    rows_.push_back(r);
    write_results();
  }
  void write_results() const {
    std::string s = header_.dump() + "\n";
    for (const auto& r : rows_) s += r.dump() + "\n";
    write_file_atomic((fs::path(o_.out) / "results.jsonl").string(), s);
  }
  void fill_from_train(json* row, const json& t, double prep_s, const ChildResult& c,
                       const std::vector<std::pair<double, double>>& util) const;
  json train_row(const Pipeline& p, int64_t rows, int64_t batch, double prep_s,
                 const std::vector<std::string>& args, const std::string& log);
  void measure_fpga_core(const std::string& gen_dir);
  void measure_pcie();
  void write_markdown(const std::string& plots_note) const;

  MeasureOptions o_;
  std::string exe_;
  fs::path work_;
  bool gpu_ = false;
  std::string gpu_why_, gpu_name_;
  bool py_torch_ = false, py_cuda_ = false;
  std::string py_why_, py_version_;
  std::vector<int64_t> sizes_, batches_;
  int64_t sweep_batch_ = 0;
  json header_;
  std::vector<json> rows_;
  int failed_ = 0;
  // fpga core and PCIe (pipeline 5)
  double fpga_bytes_per_cycle_ = NAN;
  std::string fpga_why_;
  double pcie_gbps_ = NAN;
  std::string pcie_why_;
};

void Suite::fill_from_train(json* row, const json& t, double prep_s, const ChildResult& c,
                            const std::vector<std::pair<double, double>>& util) const {
  json& r = *row;
  const double train_s = jnum(t, "train_seconds");
  const double wait_f = jnum(t, "data_wait_fraction");
  r["status"] = "ok";
  r["device"] = t.value("device", "");
  r["prep_s"] = prep_s;
  r["train_s"] = num_or_null(train_s);
  r["total_s"] = num_or_null(prep_s + train_s);
  r["rows_trained"] = t.value("rows_trained", 0);
  r["samples_per_s"] = num_or_null(jnum(t, "train_samples_per_s"));
  r["end_to_end_samples_per_s"] = num_or_null(jnum(t, "rows_trained") / (prep_s + train_s));
  r["test_auc"] = num_or_null(jnum(t, "test_auc"));
  r["data_wait_fraction"] = num_or_null(wait_f);
  // Offline preparation is time the GPU waits for data too.
  r["data_wait_fraction_total"] = num_or_null((prep_s + wait_f * train_s) / (prep_s + train_s));
  r["eval_s"] = num_or_null(jnum(t, "eval_seconds"));
  r["train_process_s"] = c.seconds;
  r["gpu_util_mean"] = num_or_null(mean_util(util));
  r["gpu_util"] = samples_json(util);
}

json Suite::train_row(const Pipeline& p, int64_t rows, int64_t batch, double prep_s,
                      const std::vector<std::string>& args, const std::string& log) {
  json r = base_row(p, rows, batch);
  GpuSampler sampler(gpu_);
  const ChildResult c = run_child(args, log);
  const auto util = sampler.stop();
  const json t = last_json(c.out);
  if (c.exit_code != 0 || !t.is_object() || !std::isfinite(jnum(t, "train_seconds"))) {
    r["status"] = "failed";
    r["reason"] = failure(c);
    return r;
  }
  fill_from_train(&r, t, prep_s, c, util);
  return r;
}

void Suite::measure_fpga_core(const std::string& gen_dir) {
  const auto engines = available_engines();
  if (std::find(engines.begin(), engines.end(), "fpga") == engines.end()) {
    fpga_why_ = "this build has no fpga engine (built without Verilator)";
    return;
  }
  // A line-aligned sample of the first day: the simulated core runs far slower than the card would.
  const std::string day0 = (fs::path(gen_dir) / "day_0.tsv").string();
  const std::string text = read_file(day0);
  size_t n = std::min(text.size(), size_t(o_.fpga_sample_kb) * 1024);
  while (n > 0 && text[n - 1] != '\n') --n;
  if (n == 0) {
    fpga_why_ = "no whole line in the sample of " + day0;
    return;
  }
  const fs::path in = work_ / "fpga-sample.tsv";
  {
    std::ofstream f(in, std::ios::binary);
    f.write(text.data(), std::streamsize(n));
  }
  const ChildResult c = run_child({self(), "prep", "--engine", "fpga", "--vocab", "none", "--out",
                                   (work_ / "fpga-prep").string(), in.string()},
                                  (work_ / "log-fpga-prep").string());
  const std::string key = "  fpga core: ";
  const size_t at = c.out.find(key);
  unsigned long long cycles = 0, bytes = 0;
  if (c.exit_code != 0 || at == std::string::npos ||
      std::sscanf(c.out.c_str() + at + key.size(), "%llu cycles for %llu bytes", &cycles, &bytes) != 2 ||
      cycles == 0) {
    fpga_why_ = c.exit_code != 0 ? "sluice prep --engine fpga: " + failure(c)
                                 : "sluice prep --engine fpga reported no cycle count";
    return;
  }
  fpga_bytes_per_cycle_ = double(bytes) / double(cycles);
  header_["fpga_core"] = {{"sample_bytes", bytes}, {"cycles", cycles}, {"bytes_per_cycle", fpga_bytes_per_cycle_},
                          {"clock_hz", kFpgaClockHz}, {"gb_per_s", fpga_bytes_per_cycle_ * kFpgaClockHz / 1e9}};
}

void Suite::measure_pcie() {
  if (!gpu_) {
    pcie_why_ = "no GPU (" + gpu_why_ + ")";
    return;
  }
  if (!py_cuda_) {
    pcie_why_ = "the host-to-GPU rate is measured with PyTorch, and " + torch_python() +
                (py_torch_ ? "'s torch has no usable GPU" : " cannot import torch");
    return;
  }
  const std::string script = find_repo_file("bench/pcie_rate.py");
  if (script.empty()) {
    pcie_why_ = "cannot find bench/pcie_rate.py";
    return;
  }
  const ChildResult c = run_child({torch_python(), script}, (work_ / "log-pcie").string());
  const json j = last_json(c.out);
  const double g = jnum(j, "h2d_gb_per_s");
  if (c.exit_code != 0 || !std::isfinite(g) || g <= 0) {
    pcie_why_ = "bench/pcie_rate.py: " + failure(c);
    return;
  }
  pcie_gbps_ = g;
  header_["pcie"] = j;
}

void Suite::run() {
  namespace chr = std::chrono;
  exe_ = self_exe();
  if (exe_.empty()) throw Error("measure: cannot resolve /proc/self/exe");
  sizes_ = parse_list(o_.sizes, "--sizes");
  std::sort(sizes_.begin(), sizes_.end());
  sizes_.erase(std::unique(sizes_.begin(), sizes_.end()), sizes_.end());
  batches_ = parse_list(o_.batch_sizes, "--batch-sizes");
  std::vector<int64_t> wanted = parse_list(o_.pipelines, "--pipelines");
  for (int64_t p : wanted)
    if (p < 1 || p > 5) throw CLI::ValidationError("--pipelines", "pipelines are numbered 1 to 5");
  auto want = [&](int id) { return std::find(wanted.begin(), wanted.end(), id) != wanted.end(); };
  sweep_batch_ = o_.sweep_batch > 0 ? o_.sweep_batch : batches_[batches_.size() / 2];

  // The output folder: the suite's own files only; earlier results are kept unless --overwrite.
  fsops::make_dirs(o_.out);
  if (!o_.overwrite) {
    for (const char* f : kOutputFiles) {
      if (path_exists((fs::path(o_.out) / f).string()))
        throw Error("measure: " + (fs::path(o_.out) / f).string() +
                    " exists (from an earlier run): --overwrite replaces the suite's files in " + o_.out +
                    " (and nothing else)");
    }
  }
  // Work folders of earlier runs that were killed outright (their process is gone) are this suite's own.
  if (DIR* d = ::opendir(o_.out.c_str())) {
    const std::string prefix = ".measure-work-";
    std::vector<std::string> stale;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) continue;
      const std::string pid = name.substr(prefix.size());
      if (pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
      if (!fsops::process_alive(pid_t(std::stol(pid)))) stale.push_back((fs::path(o_.out) / name).string());
    }
    ::closedir(d);
    for (const auto& s : stale) fsops::remove_tree(s);
  }
  work_ = fs::path(o_.out) / (".measure-work-" + std::to_string(getpid()));
  if (::mkdir(work_.c_str(), 0755) != 0)
    throw Error("measure: cannot create " + work_.string() + ": " + std::strerror(errno));
  struct Cleanup {
    fs::path dir;
    bool keep;
    ~Cleanup() {
      if (!keep) fsops::remove_tree(dir.string());  // the folder this run created: its data and logs only
    }
  } cleanup{work_, o_.keep_work};

  // What this machine can run.
  gpu_ = cuda_device_available(&gpu_why_);
  if (gpu_) {
    const ChildResult c = run_child({"nvidia-smi", "-i", "0", "--query-gpu=name", "--format=csv,noheader"},
                                    (work_ / "log-gpu-name").string());
    gpu_name_ = c.exit_code == 0 ? last_line(c.out) : "";
  }
  const std::string py_probe =
      "import numpy, torch; print(torch.__version__, int(torch.cuda.is_available()))";
  {
    const ChildResult c = run_child({torch_python(), "-c", py_probe}, (work_ / "log-python").string());
    if (c.exit_code == 0) {
      py_torch_ = true;
      std::stringstream ss(last_line(c.out));
      int cuda = 0;
      ss >> py_version_ >> cuda;
      py_cuda_ = cuda != 0;
    } else {
      py_why_ = torch_python() + " -c \"import numpy, torch\" failed" +
                (last_line(c.err).empty() ? "" : " (" + last_line(c.err) + ")");
    }
  }
  const std::string py_prep = find_repo_file("bench/criteo_prep_py.py");
  const std::string py_train = find_repo_file("bench/train_dataloader.py");
  if (py_torch_ && (py_prep.empty() || py_train.empty())) {
    py_torch_ = false;
    py_why_ = "cannot find bench/criteo_prep_py.py and bench/train_dataloader.py (set SLUICE_SOURCE_DIR)";
  }
  const std::string device = gpu_ ? "cuda" : "cpu";
#if defined(SLUICE_HAVE_TORCH)
  const bool trainer = true;
#else
  const bool trainer = false;  // `sluice train` is not in this build: its rows are skipped
#endif
  const std::string kNoTrainer = "this build has no trainer, sluice train (built without libtorch)";

  struct utsname un {};
  uname(&un);
  header_["type"] = "machine";
  header_["date"] = utc_now();
  header_["host"] = un.nodename;
  header_["cpu"] = first_line_of("/proc/cpuinfo", "model name");
  header_["cores"] = std::thread::hardware_concurrency();
  header_["gpu"] = gpu_ ? json(gpu_name_.empty() ? "a CUDA GPU" : gpu_name_) : json(nullptr);
  header_["gpu_why_not"] = gpu_ ? json(nullptr) : json(gpu_why_);
  header_["python_torch"] = py_torch_ ? json(py_version_) : json(nullptr);
  header_["quick"] = o_.quick;
  header_["sizes"] = sizes_;
  header_["batch_sizes"] = batches_;
  header_["sweep_batch_size"] = sweep_batch_;
  header_["days"] = o_.days;
  header_["cardinality_scale"] = o_.cardinality_scale;
  header_["seed"] = o_.seed;
  header_["device"] = device;
  {
    std::string cmd = "sluice measure";
    if (o_.quick) cmd += " --quick";
    cmd += " --sizes " + o_.sizes + " --batch-sizes " + o_.batch_sizes + " --pipelines " + o_.pipelines;
    cmd += " --days " + std::to_string(o_.days) + " --cardinality-scale " + fmt(o_.cardinality_scale, 4) +
           " --seed " + std::to_string(o_.seed) + " --out " + o_.out;
    header_["command"] = cmd;
  }
  write_results();

  const auto t_start = Clock::now();
  const int64_t largest = sizes_.back();
  for (const int64_t rows : sizes_) {
    std::vector<int64_t> bs = rows == largest ? batches_ : std::vector<int64_t>{sweep_batch_};
    if (std::find(bs.begin(), bs.end(), sweep_batch_) == bs.end()) bs.push_back(sweep_batch_);
    const std::string tag = std::to_string(rows);
    const fs::path gen = work_ / ("gen-" + tag);
    const ChildResult g = run_child({self(), "gen", "--rows", tag, "--days", std::to_string(o_.days), "--seed",
                                     std::to_string(o_.seed), "--cardinality-scale", fmt(o_.cardinality_scale, 6),
                                     "--no-sync", "--out", gen.string()},
                                    (work_ / ("log-gen-" + tag)).string());
    if (g.exit_code != 0) throw Error("measure: sluice gen failed: " + failure(g));
    std::vector<std::string> days;
    uint64_t train_bytes = 0, all_bytes = 0;
    for (int d = 0; d < o_.days; ++d) {
      days.push_back((gen / ("day_" + std::to_string(d) + ".tsv")).string());
      const uint64_t sz = size_of(days.back());
      all_bytes += sz;
      if (d + 1 < o_.days) train_bytes += sz;
    }
    header_["data"][tag] = {{"bytes", all_bytes}, {"train_bytes", train_bytes}};
    if (rows == sizes_.front() && want(5)) {  // once, on the first dataset: bytes per cycle is the data's
      measure_fpga_core(gen.string());
      measure_pcie();
    }

    // 1: Python per-line preprocessing (once per dataset), DataLoader training per batch size.
    if (want(1)) {
      if (!py_torch_) {
        for (int64_t b : bs) skip(kPipelines[0], rows, b, py_why_);
      } else if (gpu_ && !py_cuda_) {
        for (int64_t b : bs) skip(kPipelines[0], rows, b, "GPU training: " + torch_python() + "'s torch has no usable GPU");
      } else {
        std::vector<std::string> args = {torch_python(), py_prep, "--out", (work_ / ("py-" + tag)).string()};
        args.insert(args.end(), days.begin(), days.end());
        GpuSampler sampler(gpu_);
        const ChildResult p = run_child(args, (work_ / ("log-pyprep-" + tag)).string());
        const auto prep_util = sampler.stop();
        for (int64_t b : bs) {
          if (p.exit_code != 0) {
            json r = base_row(kPipelines[0], rows, b);
            r["status"] = "failed";
            r["reason"] = "bench/criteo_prep_py.py: " + failure(p);
            add(r);
            continue;
          }
          json r = train_row(kPipelines[0], rows, b, p.seconds,
                             {torch_python(), py_train, "--data", (work_ / ("py-" + tag)).string(), "--batch-size",
                              std::to_string(b), "--device", device, "--seed", std::to_string(o_.seed)},
                             (work_ / ("log-pytrain-" + tag + "-" + std::to_string(b))).string());
          r["prep_gpu_util"] = samples_json(prep_util);
          add(r);
        }
      }
    }
    // 2: sluice prep offline (cpu engine, all cores, once per dataset), sluice train per batch size.
    if (want(2) && !trainer) {
      for (int64_t b : bs) skip(kPipelines[1], rows, b, kNoTrainer);
    } else if (want(2)) {
      const fs::path prep = work_ / ("prep-" + tag);
      std::vector<std::string> args = {self(), "prep", "--engine", "cpu", "--out", prep.string()};
      args.insert(args.end(), days.begin(), days.end());
      GpuSampler sampler(gpu_);
      const ChildResult p = run_child(args, (work_ / ("log-prep-" + tag)).string());
      const auto prep_util = sampler.stop();
      for (int64_t b : bs) {
        if (p.exit_code != 0) {
          json r = base_row(kPipelines[1], rows, b);
          r["status"] = "failed";
          r["reason"] = "sluice prep: " + failure(p);
          add(r);
          continue;
        }
        json r = train_row(kPipelines[1], rows, b, p.seconds,
                           {self(), "train", "--data", prep.string(), "--device", device, "--batch-size",
                            std::to_string(b), "--epochs", "1", "--seed", std::to_string(o_.seed)},
                           (work_ / ("log-train2-" + tag + "-" + std::to_string(b))).string());
        r["prep_gpu_util"] = samples_json(prep_util);
        add(r);
      }
    }
    // 3: online, cpu engine.
    if (want(3)) {
      for (int64_t b : bs) {
        if (!trainer) {
          skip(kPipelines[2], rows, b, kNoTrainer);
          continue;
        }
        add(train_row(kPipelines[2], rows, b, 0.0,
                      {self(), "train", "--data", gen.string(), "--engine", "cpu", "--device", device,
                       "--batch-size", std::to_string(b), "--epochs", "1", "--seed", std::to_string(o_.seed)},
                      (work_ / ("log-train3-" + tag + "-" + std::to_string(b))).string()));
      }
    }
    // 4: online, cuda engine, batches born in GPU memory.
    if (want(4)) {
      for (int64_t b : bs) {
        if (!gpu_ || !trainer) {
          skip(kPipelines[3], rows, b, !trainer ? kNoTrainer : "no GPU: " + gpu_why_);
          continue;
        }
        add(train_row(kPipelines[3], rows, b, 0.0,
                      {self(), "train", "--data", gen.string(), "--engine", "cuda", "--device", "cuda",
                       "--batch-size", std::to_string(b), "--epochs", "1", "--seed", std::to_string(o_.seed)},
                      (work_ / ("log-train4-" + tag + "-" + std::to_string(b))).string()));
      }
    }
    // 5: modelled from the core's cycles, the PCIe rate and pipeline 4's training compute.
    if (want(5)) {
      for (int64_t b : bs) {
        std::string why;
        if (!std::isfinite(fpga_bytes_per_cycle_)) why = fpga_why_;
        else if (!std::isfinite(pcie_gbps_)) why = "needs the host-to-GPU (PCIe) rate: " + pcie_why_;
        const json* p4 = nullptr;
        for (const auto& r : rows_)
          if (r["pipeline"] == 4 && r["rows"] == rows && r["batch_size"] == b && r["status"] == "ok") p4 = &r;
        if (why.empty() && !p4) why = "needs pipeline 4's run at the same size and batch (its training compute time)";
        if (!why.empty()) {
          skip(kPipelines[4], rows, b, why);
          continue;
        }
        const double core_rate = fpga_bytes_per_cycle_ * kFpgaClockHz;  // bytes/s
        const double rate = std::min(core_rate, pcie_gbps_ * 1e9);
        const double stream_s = double(train_bytes) / rate;
        const double p4_train = (*p4)["train_s"].get<double>();
        const double p4_wait = (*p4)["data_wait_fraction"].is_number() ? (*p4)["data_wait_fraction"].get<double>() : 0.0;
        const double compute_s = p4_train * (1.0 - p4_wait);
        const double train_s = std::max(stream_s, compute_s);
        json r = base_row(kPipelines[4], rows, b);
        r["status"] = "ok";
        r["device"] = "cuda";
        r["prep_s"] = 0.0;
        r["train_s"] = train_s;
        r["total_s"] = train_s;
        r["rows_trained"] = (*p4)["rows_trained"];
        r["samples_per_s"] = (*p4)["rows_trained"].get<double>() / train_s;
        r["end_to_end_samples_per_s"] = r["samples_per_s"];
        r["test_auc"] = (*p4)["test_auc"];  // the fpga engine yields the cuda engine's bytes: the same batches
        r["auc_from"] = "pipeline 4 (the engines give identical batches)";
        r["data_wait_fraction"] = (train_s - compute_s) / train_s;
        r["data_wait_fraction_total"] = r["data_wait_fraction"];
        r["gpu_util_mean"] = nullptr;
        r["gpu_util"] = json::array();
        r["model"] = {{"train_bytes", train_bytes},
                      {"core_gb_per_s", core_rate / 1e9},
                      {"pcie_gb_per_s", pcie_gbps_},
                      {"stream_s", stream_s},
                      {"compute_s_from_pipeline_4", compute_s},
                      {"ids", "numbered on the host from the core's rows, as the engine does online; not modelled"}};
        add(r);
      }
    }
  }
  header_["seconds"] = chr::duration<double>(Clock::now() - t_start).count();
  write_results();

  // Plots (matplotlib), then the report that names them.
  std::string plots_note;
  const std::string plot = find_repo_file("scripts/plot_measure.py");
  if (plot.empty()) {
    plots_note = "Plots not made: scripts/plot_measure.py was not found (set SLUICE_SOURCE_DIR).";
  } else {
    const ChildResult c = run_child({plot_python(), plot, (fs::path(o_.out) / "results.jsonl").string(), "--out",
                                     o_.out},
                                    (work_ / "log-plot").string());
    if (c.exit_code == 3) plots_note = "Plots not made: matplotlib is not installed for " + plot_python() + ".";
    else if (c.exit_code != 0) plots_note = "Plots not made: scripts/plot_measure.py failed: " + failure(c);
  }
  if (!plots_note.empty()) std::fprintf(stderr, "measure: %s\n", plots_note.c_str());
  write_markdown(plots_note);
  std::printf("measure: %zu rows in %s/results.jsonl, report %s/measurements.md (%.0f s)\n", rows_.size(),
              o_.out.c_str(), o_.out.c_str(), header_["seconds"].get<double>());
  if (failed_ > 0)
    throw Error("measure: " + std::to_string(failed_) + " run(s) failed; their reasons are in " + o_.out +
                "/results.jsonl (rerun with --keep-work to keep the logs)");
}

void Suite::write_markdown(const std::string& plots_note) const {
  std::string md;
  const int64_t largest = sizes_.back();
  const json& data = header_["data"][std::to_string(largest)];
  md += "## Results: " + header_["date"].get<std::string>() + "\n\n";
  md += "Command: `" + header_["command"].get<std::string>() + "`";
  md += std::string(o_.quick ? " (`--quick`: small data, a smoke test, not a measurement to quote)" : "") + "\n\n";
  md += "Machine: " + header_["cpu"].get<std::string>() + ", " + std::to_string(header_["cores"].get<unsigned>()) +
        " cores; GPU: " + (gpu_ ? (gpu_name_.empty() ? std::string("a CUDA GPU") : gpu_name_) : "none (" + gpu_why_ + ")") +
        "; training on " + header_["device"].get<std::string>() + "; Python torch: " +
        (py_torch_ ? py_version_ : std::string("none")) + ".\n\n";
  md += "Data: `sluice gen --rows " + std::to_string(largest) + " --days " + std::to_string(o_.days) + " --seed " +
        std::to_string(o_.seed) + " --cardinality-scale " + fmt(o_.cardinality_scale, 4) + "` (" +
        fmt(double(data["bytes"].get<uint64_t>()) / 1e6, 1) +
        " MB of TSV); every day but the last trains, the first half of the last day tests. One epoch, DLRM "
        "kaggle preset, Adagrad lr 0.01 (docs/measurements.md).\n\n";

  md += "### Time to a trained model, " + std::to_string(largest) + " rows\n\n";
  md += "| pipeline | batch | prep s | train s | total s | train samples/s | test AUC | GPU util % | waiting for "
        "data: % of training (of total) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows_) {
    if (r["rows"] != largest || r["status"] != "ok") continue;
    const auto d = [&](const char* k) { return r[k].is_number() ? r[k].get<double>() : NAN; };
    std::string label = r["label"].get<std::string>();
    md += "| " + label + " | " + std::to_string(r["batch_size"].get<int64_t>()) + " | " + fmt(d("prep_s"), 2) +
          " | " + fmt(d("train_s"), 2) + " | " + fmt(d("total_s"), 2) + " | " + fmt_rate(d("samples_per_s")) +
          " | " + fmt(d("test_auc"), 4) + " | " + fmt(d("gpu_util_mean"), 0) + " | " +
          fmt(100 * d("data_wait_fraction"), 1) + " (" + fmt(100 * d("data_wait_fraction_total"), 1) + ") |\n";
  }
  // The seed system's published single runs, as its Measurements folder gives them.
  const char* seed_label = "seed, published (Criteo; its data and machine, not measured here)";
  const double seed_prep = 1136.85;
  const double seed_cpu_train[3] = {134.88, 136.88, 177.29};
  const double seed_fpga_total[3] = {89.17, 46.39, 27.46};
  const int seed_batch[3] = {4096, 8192, 16384};
  for (int i = 0; i < 3; ++i)
    md += std::string("| ") + seed_label + ": CPU–GPU | " + std::to_string(seed_batch[i]) + " | " +
          fmt(seed_prep, 2) + " | " + fmt(seed_cpu_train[i], 2) + " | " + fmt(seed_prep + seed_cpu_train[i], 2) +
          " | | | | |\n";
  for (int i = 0; i < 3; ++i)
    md += std::string("| ") + seed_label + ": FPGA–GPU | " + std::to_string(seed_batch[i]) + " | | | " +
          fmt(seed_fpga_total[i], 2) + " | | | 64–91 (range over its runs) | |\n";
  md += "\nThe seed also reports FPGA preprocessing at about 4.2 GB/s and the CPU -> FPGA -> GPU transfer at "
        "4.66–4.8 GB/s.";
  if (header_.contains("fpga_core"))
    md += " Here the fpga core's simulation gives " + fmt(header_["fpga_core"]["bytes_per_cycle"].get<double>(), 2) +
          " bytes/cycle (" + fmt(header_["fpga_core"]["gb_per_s"].get<double>(), 2) +
          " GB/s at 250 MHz; parsing and transforms, ids numbered on the host)";
  if (header_.contains("pcie"))
    md += std::string(header_.contains("fpga_core") ? "; " : " Here ") + "the host-to-GPU copy ran at " +
          fmt(jnum(header_["pcie"], "h2d_gb_per_s"), 2) + " GB/s";
  md += header_.contains("fpga_core") || header_.contains("pcie") ? ".\n\n" : "\n\n";

  if (sizes_.size() > 1) {
    md += "### Total time vs dataset size, batch " + std::to_string(sweep_batch_) + "\n\n| rows |";
    std::vector<int> shown;
    for (const auto& p : kPipelines) {
      bool any = false;
      for (const auto& r : rows_) any = any || (r["pipeline"] == p.id && r["status"] == "ok");
      if (any) {
        shown.push_back(p.id);
        md += " " + std::to_string(p.id) + " total s |";
      }
    }
    md += "\n|---:|";
    for (size_t i = 0; i < shown.size(); ++i) md += "---:|";
    md += "\n";
    for (int64_t n : sizes_) {
      md += "| " + std::to_string(n) + " |";
      for (int id : shown) {
        std::string cell;
        for (const auto& r : rows_)
          if (r["pipeline"] == id && r["rows"] == n && r["batch_size"] == sweep_batch_ && r["status"] == "ok")
            cell = fmt(r["total_s"].get<double>(), 2);
        md += " " + cell + " |";
      }
      md += "\n";
    }
    md += "\n";
  }

  // Rows not run, once per pipeline and reason.
  std::vector<std::string> skipped;
  for (const auto& r : rows_) {
    if (r["status"] == "ok") continue;
    const std::string line = "- " + r["label"].get<std::string>() + ": " + r["status"].get<std::string>() + ", " +
                             r["reason"].get<std::string>();
    if (std::find(skipped.begin(), skipped.end(), line) == skipped.end()) skipped.push_back(line);
  }
  md += "### Skipped or failed rows\n\n";
  if (skipped.empty()) md += "None.\n";
  for (const auto& s : skipped) md += s + "\n";
  md += "\n### Plots\n\n";
  if (!plots_note.empty()) {
    md += plots_note + "\n";
  } else {
    md += "![time per pipeline and batch size](time_by_batch.png)\n\n";
    md += "![GPU utilisation over time](gpu_util.png)\n\n";
    md += "![total time vs dataset size](time_vs_size.png)\n";
  }
  write_file_atomic((fs::path(o_.out) / "measurements.md").string(), md);
}

}  // namespace

void add_measure_command(CLI::App& app) {
  auto o = std::make_shared<MeasureOptions>();
  CLI::App* c = app.add_subcommand(
      "measure",
      "Time five pipelines to a trained DLRM (Python baseline, prep+train, online cpu/cuda, fpga modelled) on the same "
      "generated data; results.jsonl, measurements.md and plots in --out");
  c->add_option("--out", o->out, "Output folder (created; only the suite's own files in it are written)")->required();
  c->add_flag("--quick", o->quick,
              "Small data and batch sizes (a few minutes on a CPU): sizes 20000,60000, batch sizes 512,1024,2048");
  c->add_option("--sizes", o->sizes, "Rows per dataset, comma-separated (default 1000000,4000000,8000000)");
  c->add_option("--batch-sizes", o->batch_sizes, "Batch sizes at the largest size (default 4096,8192,16384)");
  c->add_option("--sweep-batch-size", o->sweep_batch, "Batch size of the dataset-size sweep (default: the middle one)")
      ->check(PositiveInt<int>());
  c->add_option("--pipelines", o->pipelines, "Pipelines to run, e.g. 2,3 (default 1,2,3,4,5)")->capture_default_str();
  c->add_option("--days", o->days, "Day files per dataset (every day but the last trains)")->capture_default_str()
      ->check(IntRange<int>(2, 100));
  c->add_option("--cardinality-scale", o->cardinality_scale,
                "sluice gen's --cardinality-scale (default 0.05; --quick 0.002)")
      ->check(PositiveReal());
  c->add_option("--seed", o->seed, "Seed of the data and the models")->capture_default_str()
      ->check(NonNegativeInt<uint64_t>());
  c->add_option("--fpga-sample-kb", o->fpga_sample_kb,
                "KiB of the first day run through the simulated fpga core (default 4096; --quick 256)")
      ->check(PositiveInt<int>());
  c->add_flag("--overwrite", o->overwrite, "Replace the suite's files from an earlier run in --out");
  c->add_flag("--keep-work", o->keep_work, "Keep the generated data and the runs' logs (--out/.measure-work-PID)");
  c->callback([o] {
    MeasureOptions m = *o;
    if (m.sizes.empty()) m.sizes = m.quick ? "20000,60000" : "1000000,4000000,8000000";
    if (m.batch_sizes.empty()) m.batch_sizes = m.quick ? "512,1024,2048" : "4096,8192,16384";
    if (m.cardinality_scale <= 0) m.cardinality_scale = m.quick ? 0.002 : 0.05;
    if (m.fpga_sample_kb <= 0) m.fpga_sample_kb = m.quick ? 256 : 4096;
    Suite(m).run();
  });
}

}  // namespace sluice::cli
