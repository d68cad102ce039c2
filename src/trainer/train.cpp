// The training loop: batches from a BatchStream, evaluation, checkpoints, metrics, progress, and the
// synthetic training-only benchmark.
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <system_error>
#include <unordered_map>
#include <thread>

#include "sluice/interrupt.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/metrics.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/step.hpp"
#include "util/fs_ops.hpp"
#include "util/notice.hpp"

namespace sluice::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

constexpr const char* kCheckpointFile = "checkpoint.sluice";
constexpr int64_t kDefaultTestBatch = 16384;

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("--device " + name +
                  " was requested but no CUDA GPU is available (this libtorch has no CUDA support or no "
                  "GPU is visible); use --device cpu");
    if (name == "cuda") return torch::Device(torch::kCUDA, 0);
    int64_t index = -1;
    if (name.size() > 5 && name[4] == ':' && name.find_first_not_of("0123456789", 5) == std::string::npos)
      index = std::stoll(name.substr(5));
    if (index < 0) throw Error("bad device '" + name + "' (expected cpu, cuda or cuda:N)");
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (index >= count)
      throw Error("--device " + name + ": only " + std::to_string(count) + " CUDA device(s) are visible");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error("unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
}

void apply_precision(Precision p) {
  at::globalContext().setAllowTF32CuBLAS(p == Precision::kTf32);
  at::globalContext().setAllowTF32CuDNN(p == Precision::kTf32);
}

void sync_device(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// Keeps leases alive until the device work that reads their memory has completed. On the CPU every op is
// synchronous, so a lease is released at once. On CUDA an event is recorded on the current stream after
// the step's work was enqueued; leases are released once their event has completed, and at most
// max_pending are held (the producer's ring must keep a free slot, or next() would wait forever).
class LeaseKeeper {
 public:
  LeaseKeeper(torch::Device device, size_t max_pending) : device_(device), max_pending_(max_pending) {}
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;
  ~LeaseKeeper() {
    try {
      drain();
    } catch (...) {
    }
  }

  void retire(Lease lease) {
    if (!device_.is_cuda()) {
      lease.release();
      return;
    }
    c10::Event event(c10::DeviceType::CUDA);
    c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
    event.record(impl.getStream(device_));
    pending_.push_back(Pending{std::move(lease), std::move(event)});
    while (!pending_.empty() && pending_.front().event.query()) pending_.pop_front();
    while (pending_.size() > max_pending_) wait_front();
  }

  void drain() {
    while (!pending_.empty()) wait_front();
  }

 private:
  struct Pending {
    Lease lease;
    c10::Event event;
  };
  void wait_front() {
    while (!pending_.front().event.query()) std::this_thread::yield();
    pending_.pop_front();
  }

  torch::Device device_;
  size_t max_pending_;
  std::deque<Pending> pending_;
};

struct Staged {
  torch::Tensor dense, flat_ids, labels;
  int64_t rows = 0;
};

void check_batch_ids(const BatchView& v, const std::vector<int64_t>& sizes, uint64_t id_modulo) {
  const int32_t* s = v.sparse;
  for (int64_t r = 0; r < v.rows; ++r, s += kNumSparse) {
    for (int t = 0; t < kNumSparse; ++t) {
      const int64_t id = s[t];
      const int64_t limit = id_modulo > 0 ? std::numeric_limits<int64_t>::max() : sizes[t];
      if (id < 0 || id >= limit)
        throw Error("row " + std::to_string(v.first_row + static_cast<uint64_t>(r)) + ": C" +
                    std::to_string(t + 1) + " id " + std::to_string(id) + " is outside its embedding table of " +
                    std::to_string(sizes[t]) + " rows (do the table sizes match the data?)");
    }
  }
}

// Wraps a batch's memory as tensors (no copy); host batches are copied to a GPU model's device
// (asynchronously when the memory is pinned). The lease must outlive the work that reads them.
Staged stage(const BatchView& v, const Dlrm& model, const TrainOptions& o) {
  if (v.rows <= 0 || !v.dense || !v.sparse || !v.labels) throw Error("internal: empty batch view");
  const bool on_host = v.memory != MemoryKind::kDevice;
  if (on_host && o.check_ids) check_batch_ids(v, model.arch().table_sizes, o.id_modulo);
  const torch::Device src = on_host ? torch::Device(torch::kCPU)
                                    : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(v.device));
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(src);
  const auto i32 = torch::TensorOptions().dtype(torch::kInt32).device(src);
  Staged b;
  b.rows = v.rows;
  b.dense = torch::from_blob(const_cast<float*>(v.dense), {v.rows, kNumDense}, f32);
  torch::Tensor sparse = torch::from_blob(const_cast<int32_t*>(v.sparse), {v.rows, kNumSparse}, i32);
  b.labels = torch::from_blob(const_cast<float*>(v.labels), {v.rows}, f32);
  if (src != model.device()) {
    const bool non_blocking = v.memory == MemoryKind::kPinnedHost;
    b.dense = b.dense.to(model.device(), non_blocking);
    sparse = sparse.to(model.device(), non_blocking);
    b.labels = b.labels.to(model.device(), non_blocking);
  }
  b.flat_ids = model.flat_ids(sparse, o.id_modulo);
  return b;
}

size_t max_pending_for(int ring_depth) { return static_cast<size_t>(std::max(0, ring_depth - 2)); }

// Bytes of one row in a host batch: 13 dense floats, 26 ids, a label.
constexpr double kRowBytes = 4.0 * (kNumDense + kNumSparse + 1);

// Runs f() (opening a stream, or taking a batch from it); a thread the data pipeline could not start
// (std::system_error, most often EAGAIN: no memory left for its stack) becomes a clear sluice::Error.
template <class F>
decltype(auto) pipeline_guard(F&& f) {
  try {
    return f();
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::resource_unavailable_try_again)
      throw Error("the data pipeline could not start a thread (" + e.code().message() +
                  "): too little memory for its stack, or too many threads; fewer --data-threads need less");
    throw Error("the data pipeline failed: " + std::string(e.what()) + " (" + e.code().message() + ")");
  }
}

// Opens a stream; running out of memory for its ring of batches is reported as such.
std::unique_ptr<BatchStream> open_stream(const StreamFactory& streams, Split split, uint64_t start_row,
                                         int64_t batch_size, const TrainOptions& o) {
  std::unique_ptr<BatchStream> s = oom_guard(
      [&] {
        return std::string("allocating the ") + (split == Split::kTrain ? "training" : "test") + " batch ring (" +
               std::to_string(o.ring_depth) + " batches of " + std::to_string(batch_size) + " rows = " +
               bytes_text(kRowBytes * static_cast<double>(o.ring_depth) * static_cast<double>(batch_size)) +
               " of host memory)";
      },
      [&] { return pipeline_guard([&] { return streams(split, start_row, batch_size); }); });
  if (!s) throw Error(split == Split::kTrain ? "no training stream" : "no test stream");
  return s;
}

// The next batch of a stream; a producer that ran out of memory is reported as such.
Lease next_batch(BatchStream& stream, int64_t batch_size) {
  return oom_guard(
      [&] {
        return "in the data pipeline preparing batches of " + std::to_string(batch_size) +
               " rows (fewer --data-threads or a smaller --ring-depth need less)";
      },
      [&] { return pipeline_guard([&] { return stream.next(); }); });
}

// OpenBLAS (libtorch's matrix products on the CPU) allocates a work buffer for each of its threads on
// the first product and, when that allocation fails, retries forever: under an address-space limit
// (ulimit -v) or strict overcommit, running out of memory would be a hang. So the buffers are taken up
// front, once, after checking that the memory is there; OpenBLAS keeps them for the process's life.
void reserve_blas_buffers() {
  static std::mutex mu;
  static bool done = false;
  std::lock_guard<std::mutex> lock(mu);
  if (done) return;
  using ThreadsFn = int (*)();
  const auto threads_fn = reinterpret_cast<ThreadsFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (threads_fn == nullptr) {  // another BLAS
    done = true;
    return;
  }
  const int threads = std::max(1, threads_fn());
  constexpr size_t kBuffer = size_t{130} << 20;  // OpenBLAS's BUFFER_SIZE on x86-64 (128 MiB) and some
  const size_t need = static_cast<size_t>(threads) * kBuffer;
  void* probe = std::malloc(need);
  if (probe == nullptr)
    throw Error("out of memory reserving the BLAS library's work buffers (" + std::to_string(threads) +
                " thread(s) x 128 MiB = " + bytes_text(static_cast<double>(need)) +
                "; OPENBLAS_NUM_THREADS=1 needs less)");
  std::free(probe);
  // One product large enough to be split over every BLAS thread: each takes its buffer now.
  oom_guard([] { return std::string("reserving the BLAS library's work buffers"); }, [] {
    torch::NoGradGuard no_grad;
    const torch::Tensor a = torch::ones({512, 512}, torch::kFloat32);
    (void)torch::mm(a, a);
  });
  done = true;
}

struct Evaluation {
  BinaryMetrics m;
  bool interrupted = false;  // TrainOptions::stop fired (or the test stream was interrupted)
};

Evaluation evaluate(const Dlrm& model, const StreamFactory& streams, const TrainOptions& o) {
  torch::NoGradGuard no_grad;
  Evaluation ev;
  const int64_t bs = o.test_batch_size > 0 ? o.test_batch_size : kDefaultTestBatch;
  const auto what = [&] {
    return "evaluating the test split (batches of " + std::to_string(bs) + " rows on " + model.device().str() +
           "; a smaller --test-batch-size needs less)";
  };
  std::vector<torch::Tensor> logits, labels;
  try {
    std::unique_ptr<BatchStream> stream = open_stream(streams, Split::kTest, 0, bs, o);
    LeaseKeeper keeper(model.device(), max_pending_for(o.ring_depth));
    for (;;) {
      if (o.stop && o.stop()) {
        ev.interrupted = true;
        break;
      }
      Lease lease = next_batch(*stream, bs);
      if (!lease) break;
      oom_guard(what, [&] {
        Staged b = stage(lease.view(), model, o);
        logits.push_back(model.forward(b.dense, model.gather(b.flat_ids)));
        labels.push_back(b.labels.clone());
      });
      keeper.retire(std::move(lease));
    }
  } catch (const Interrupted&) {
    ev.interrupted = true;
  }
  if (ev.interrupted) return ev;
  if (logits.empty()) {
    ev.m = metrics_from_logits(nullptr, nullptr, 0);
    return ev;
  }
  oom_guard(what, [&] {
    const torch::Tensor z = torch::cat(logits).to(torch::kCPU).contiguous();
    const torch::Tensor y = torch::cat(labels).to(torch::kCPU).contiguous();
    ev.m = metrics_from_logits(z.data_ptr<float>(), y.data_ptr<float>(), static_cast<size_t>(z.numel()));
  });
  return ev;
}

class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool append) {
    if (path.empty()) return;
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    if (!out_) throw Error("cannot write metrics file " + path);
  }
  void write(const nlohmann::json& j) {
    if (!out_.is_open()) return;
    out_ << j.dump() << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// What the progress display shows.
struct ProgressInfo {
  int epoch = 0, epochs = 0;
  int64_t rows_in_epoch = 0;
  int64_t epoch_rows = -1;     // rows per epoch (-1 = unknown)
  int64_t step = 0;
  int64_t rows_trained = 0;
  double rate = 0;             // samples/s of this run
  double loss = std::numeric_limits<double>::quiet_NaN();
  double eta_s = -1;           // seconds of training left (-1 = unknown)
};

// The mean loss of about the last `window` steps, from sums read back from the device now and then.
class LossWindow {
 public:
  explicit LossWindow(int64_t window) : window_(std::max<int64_t>(1, window)) {}
  void add(double sum, int64_t count) {
    if (count <= 0) return;
    chunks_.emplace_back(sum, count);
    sum_ += sum;
    count_ += count;
    while (chunks_.size() > 1 && count_ - chunks_.front().second >= window_) {
      sum_ -= chunks_.front().first;
      count_ -= chunks_.front().second;
      chunks_.pop_front();
    }
  }
  double mean() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : std::numeric_limits<double>::quiet_NaN(); }

 private:
  int64_t window_;
  std::deque<std::pair<double, int64_t>> chunks_;
  double sum_ = 0;
  int64_t count_ = 0;
};

// Progress on stderr: a bar redrawn in place (a terminal), or a plain line every `every_s` seconds
// (a log file). Either is drawn only when due(): the caller reads the loss back from the device then.
class Progress {
 public:
  Progress(bool bar, double every_s) : bar_(bar), every_(bar ? 0.0 : std::max(0.0, every_s)), last_(Clock::now()) {}
  bool on() const { return bar_ || every_ > 0; }
  bool due(Clock::time_point now) const {
    if (bar_) return !drawn_ || seconds_between(last_, now) >= 0.25;
    return every_ > 0 && seconds_between(last_, now) >= every_;
  }
  void show(const ProgressInfo& p, Clock::time_point now) {
    last_ = now;
    if (bar_) draw_bar(p);
    else if (every_ > 0) print_line(p);
  }
  // The bar's final state (plain lines end with the summary instead).
  void final_bar(const ProgressInfo& p) {
    if (bar_) draw_bar(p);
  }
  void message(const std::string& m) {
    if (bar_) {
      finish();
      std::fprintf(stderr, " %s\n", m.c_str());
    } else if (every_ > 0) {
      std::fprintf(stderr, "sluice train: %s\n", m.c_str());
    }
  }
  void finish() {
    if (bar_ && drawn_) {
      std::fputc('\n', stderr);
      drawn_ = false;
    }
  }

 private:
  static double fraction(const ProgressInfo& p) {
    if (p.epoch_rows <= 0) return -1;
    return std::min(1.0, static_cast<double>(p.rows_in_epoch) / static_cast<double>(p.epoch_rows));
  }
  static std::string loss_text(double loss) {
    if (!std::isfinite(loss)) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.5f", loss);
    return b;
  }
  void draw_bar(const ProgressInfo& p) {
    drawn_ = true;
    const int width = 24;
    const double pct = fraction(p);
    const int filled = pct >= 0 ? static_cast<int>(pct * width) : 0;
    std::string bar(static_cast<size_t>(width), '.');
    for (int i = 0; i < filled; ++i) bar[static_cast<size_t>(i)] = '#';
    char line[320];
    const std::string eta = p.eta_s >= 0 ? "  ETA " + duration_text(p.eta_s) : std::string();
    if (pct >= 0)
      std::snprintf(line, sizeof line, "\r epoch %d/%d [%s] %5.1f%%  step %lld  %.0f samples/s  loss %s%s ",
                    p.epoch + 1, p.epochs, bar.c_str(), pct * 100, static_cast<long long>(p.step), p.rate,
                    loss_text(p.loss).c_str(), eta.c_str());
    else
      std::snprintf(line, sizeof line, "\r epoch %d/%d  rows %lld  step %lld  %.0f samples/s  loss %s%s ",
                    p.epoch + 1, p.epochs, static_cast<long long>(p.rows_in_epoch), static_cast<long long>(p.step),
                    p.rate, loss_text(p.loss).c_str(), eta.c_str());
    std::fputs(line, stderr);
    std::fflush(stderr);
  }
  void print_line(const ProgressInfo& p) {
    std::string rows = count_text(static_cast<double>(p.rows_trained));
    rows.erase(std::remove(rows.begin(), rows.end(), ' '), rows.end());
    const double pct = fraction(p);
    char pct_text[32] = "";
    if (pct >= 0) std::snprintf(pct_text, sizeof pct_text, " %.1f%%", pct * 100);
    const std::string eta = p.eta_s >= 0 ? " ETA " + duration_text(p.eta_s) : std::string();
    std::fprintf(stderr, "sluice train: epoch %d/%d%s step %lld rows %s %.0f samples/s loss %s%s\n", p.epoch + 1,
                 p.epochs, pct_text, static_cast<long long>(p.step), rows.c_str(), p.rate,
                 loss_text(p.loss).c_str(), eta.c_str());
    std::fflush(stderr);
  }

  bool bar_;
  double every_;
  bool drawn_ = false;
  Clock::time_point last_;
};

nlohmann::json arch_json(const Arch& a) {
  return {{"emb_dim", a.emb_dim}, {"bot_mlp", a.bot_mlp}, {"top_mlp", a.top_mlp}, {"table_sizes", a.table_sizes}};
}

std::string list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
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
    const std::string opt = meta.at("optimizer").get<std::string>();
    if (opt != optimizer_name(o.optimizer))
      throw Error(where + " was written by the " + opt + " optimizer; the options ask for " +
                  optimizer_name(o.optimizer));
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " has bad metadata (" + e.what() + ")");
  }
}

struct Position {
  int64_t step = 0;
  int epoch = 0;
  int64_t rows_in_epoch = 0;  // rows of the train split consumed in the current epoch
  int64_t rows_trained = 0;
  bool operator==(const Position&) const = default;
};

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

void validate_options(const TrainOptions& o) {
  if (o.batch_size <= 0) throw Error("--batch-size must be positive");
  if (o.test_batch_size < 0) throw Error("--test-batch-size must be positive");
  if (o.epochs < 0) throw Error("--epochs must not be negative");
  if (o.print_freq <= 0) throw Error("--print-freq must be positive");
  if (o.test_freq < 0 || o.checkpoint_every < 0) throw Error("step frequencies must not be negative");
  if (o.ring_depth < 1) throw Error("--ring-depth must be at least 1");
  if (!(o.progress_every >= 0)) throw Error("--progress-every must not be negative");
  if (int(o.resume) + int(o.auto_resume) + int(o.restart) > 1)
    throw Error("--resume, --auto-resume and --restart exclude each other (choose one)");
  if (o.checkpoint_dir.empty()) {
    if (o.resume) throw Error("--resume needs --checkpoint DIR");
    if (o.auto_resume) throw Error("--auto-resume needs --checkpoint DIR");
    if (o.restart) throw Error("--restart needs --checkpoint DIR");
  }
  validate_arch(o.arch);
  validate_schedule(o.lr);
}

// The text of an exception for a message: libtorch's without its backtrace.
std::string exception_text(const std::exception& e) {
  if (const auto* t = dynamic_cast<const c10::Error*>(&e)) return torch_message(*t);
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "out of memory";
  return e.what();
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Versions before the hidden temporary siblings wrote "<checkpoint>.tmp" and renamed it; a run
// killed in between left it behind. It is never read: remove it.
void remove_legacy_temp(const std::string& ckpt_path) {
  const std::string legacy = ckpt_path + ".tmp";
  if (is_regular_file(legacy) && ::unlink(legacy.c_str()) == 0)
    notice("removed '" + legacy + "', a partial checkpoint left behind by an interrupted run");
}

TrainResult train_impl(const TrainOptions& o, const StreamFactory& streams) {
  validate_options(o);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);
  if (device.is_cpu()) reserve_blas_buffers();

  TrainResult res;
  res.device = device.str();
  res.precision = precision_name(o.precision);
  res.optimizer = optimizer_name(o.optimizer);

  // The checkpoint: resumed, refused, or to be replaced.
  std::string ckpt_path;
  bool ckpt_exists = false;
  if (!o.checkpoint_dir.empty()) {
    fsops::make_dirs(o.checkpoint_dir);
    std::string dir = o.checkpoint_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    ckpt_path = dir + "/" + kCheckpointFile;
    // Temporary files of killed runs are never read; they are removed here.
    fsops::clean_stale_siblings(ckpt_path, notice);
    remove_legacy_temp(ckpt_path);
    struct stat st {};
    ckpt_exists = ::stat(ckpt_path.c_str(), &st) == 0;
    if (ckpt_exists && !S_ISREG(st.st_mode)) throw Error(ckpt_path + " exists and is not a checkpoint file");
  }
  const bool resume = o.resume || (o.auto_resume && ckpt_exists);
  if (o.resume && !ckpt_exists)
    throw Error("--resume: no checkpoint at " + ckpt_path + " (--auto-resume starts afresh when there is none)");

  Position pos;
  CheckpointHeader header;
  int64_t saved_step = -1;         // the step of the checkpoint on disk (-1: none, or unreadable)
  bool saved_exists = ckpt_exists;  // a checkpoint file is on disk
  bool saved_by_run = false;        // ... written by this run
  Position saved_pos;               // ... at this position
  if (resume) {
    header = read_checkpoint_header(ckpt_path);
    check_compatible(header, o);
    pos = position_of(header);
    saved_step = pos.step;
    saved_pos = pos;
    res.resumed = true;
    notice("resuming from " + ckpt_path + " at step " + std::to_string(pos.step) + ", row " +
           std::to_string(pos.rows_in_epoch) + " of epoch " + std::to_string(pos.epoch + 1) +
           (pos.epoch >= o.epochs ? " (past the last epoch: nothing left to train)" : std::string()));
  } else if (ckpt_exists) {
    std::string how;
    try {
      const Position p = position_of(read_checkpoint_header(ckpt_path));
      saved_step = p.step;
      how = "trained to step " + std::to_string(p.step) + ", " + std::to_string(p.rows_trained) + " rows";
    } catch (const Error& e) {
      how = "unreadable: " + std::string(e.what());
    }
    if (!o.restart)
      throw Error("there is already a checkpoint at " + ckpt_path + " (" + how +
                  "); continue it with --resume, or start over and replace it with --restart");
    notice("starting over (--restart): this run's first checkpoint replaces " + ckpt_path + " (" + how + ")");
  }
  const uint64_t seed = resume ? header.meta.value("seed", o.seed) : o.seed;
  const int64_t start_step = pos.step;

  check_model_fits(o.arch, o.optimizer, device);
  Dlrm model(o.arch, seed, device, o.precision);
  Optimizer opt(o.optimizer, model);
  if (resume) {
    std::map<std::string, torch::Tensor> targets;
    for (auto& nt : state_tensors(model, opt)) targets[nt.name] = nt.tensor;
    size_t found = 0;
    read_checkpoint_tensors(header, [&](const std::string& name, const std::vector<int64_t>& shape) {
      auto it = targets.find(name);
      if (it == targets.end() || it->second.sizes().vec() != shape)
        throw Error("checkpoint " + ckpt_path + " holds an unexpected tensor '" + name + "'");
      ++found;
      return it->second;
    });
    if (found != targets.size())
      throw Error("checkpoint " + ckpt_path + " lacks some of the model's tensors");
  }

  const std::unique_ptr<TrainStep> step = make_train_step(model, opt, o.step, o.cuda_graph);
  res.step = step->name();
  MetricsLog metrics(o.metrics_path, resume);
  Progress progress(o.progress, o.progress_every);

  // Writes the checkpoint; on failure records why (the previous checkpoint stays intact) and returns false.
  auto save = [&]() -> bool {
    nlohmann::json meta;
    meta["format"] = "sluice-dlrm";
    meta["arch"] = arch_json(o.arch);
    meta["optimizer"] = optimizer_name(o.optimizer);
    meta["seed"] = seed;
    meta["lr"] = {{"base_lr", o.lr.base_lr}, {"num_warmup_steps", o.lr.num_warmup_steps},
                  {"decay_start_step", o.lr.decay_start_step}, {"num_decay_steps", o.lr.num_decay_steps}};
    meta["precision"] = precision_name(o.precision);
    meta["position"] = {{"step", pos.step}, {"epoch", pos.epoch}, {"rows_in_epoch", pos.rows_in_epoch},
                        {"rows_trained", pos.rows_trained}};
    struct stat before {};
    const bool had_file = ::stat(ckpt_path.c_str(), &before) == 0;
    try {
      write_checkpoint(ckpt_path, meta, state_tensors(model, opt));
    } catch (const std::exception& e) {
      struct stat after {};
      const bool replaced = ::stat(ckpt_path.c_str(), &after) == 0 &&
                            (!had_file || after.st_ino != before.st_ino || after.st_dev != before.st_dev);
      if (replaced) {
        // The last step failed (syncing the directory after the rename): the new checkpoint is in place
        // and complete, only its durability across a system crash is in doubt.
        notice("warning: the checkpoint of step " + std::to_string(pos.step) + " is in place at " + ckpt_path +
               ", but " + exception_text(e) + "; it may not survive a system crash");
        saved_step = pos.step;
        saved_pos = pos;
        saved_exists = saved_by_run = true;
        res.checkpoint = ckpt_path;
        return true;
      }
      std::string prev = "there is no earlier checkpoint";
      if (saved_exists) {
        prev = "the previous checkpoint";
        if (saved_step >= 0)
          prev += " (step " + std::to_string(saved_step) + (saved_by_run ? "" : ", from an earlier run") + ")";
        prev += " is intact";
      }
      res.checkpoint_error = "could not write the checkpoint " + ckpt_path + " at step " + std::to_string(pos.step) +
                             " (" + exception_text(e) + "); " + prev;
      return false;
    }
    saved_step = pos.step;
    saved_pos = pos;
    saved_exists = saved_by_run = true;
    res.checkpoint = ckpt_path;
    return true;
  };

  const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  torch::Tensor loss_sum = zero.clone();   // metrics file: the loss of each print_freq interval
  int64_t loss_count = 0;
  torch::Tensor shown_sum = zero.clone();  // progress: losses since the display last read them
  int64_t shown_count = 0;
  LossWindow shown_loss(o.print_freq);
  double last_loss = std::numeric_limits<double>::quiet_NaN();
  double train_seconds = 0, eval_seconds = 0, wait_seconds = 0;
  int64_t rows_run = 0;
  double interval_start_s = 0;     // training time at the previous metrics line
  int64_t interval_start_rows = 0;
  int64_t learned_epoch_rows = -1;  // rows of an epoch this run saw end (when the hint is unknown)
  bool stopped = false, hit_max = false, ckpt_failed = false;
  bool streamed_train = false;      // this run has opened a stream over the train split
  Clock::time_point seg = Clock::now();

  auto read_loss = [&] {
    if (loss_count > 0) {
      last_loss = loss_sum.item<double>() / static_cast<double>(loss_count);
      loss_sum.zero_();
      loss_count = 0;
    }
  };
  auto rate = [&] {
    const double t = train_seconds + seconds_between(seg, Clock::now());
    return t > 0 ? static_cast<double>(rows_run) / t : 0.0;
  };
  auto epoch_rows = [&]() -> int64_t { return o.train_rows_hint > 0 ? o.train_rows_hint : learned_epoch_rows; };
  auto eta = [&](double r) -> double {
    double left = -1;
    if (epoch_rows() > 0)
      left = static_cast<double>(o.epochs - pos.epoch) * static_cast<double>(epoch_rows()) -
             static_cast<double>(pos.rows_in_epoch);
    if (o.max_steps >= 0) {
      const double by_steps =
          static_cast<double>(std::max<int64_t>(0, o.max_steps - pos.step)) * static_cast<double>(o.batch_size);
      left = left < 0 ? by_steps : std::min(left, by_steps);
    }
    if (left < 0 || r <= 0) return -1;
    return std::max(0.0, left) / r;
  };
  auto progress_info = [&](double r, double loss) {
    ProgressInfo p;
    p.epoch = std::min(pos.epoch, std::max(0, o.epochs - 1));
    p.epochs = o.epochs;
    p.rows_in_epoch = pos.epoch >= o.epochs && epoch_rows() > 0 ? epoch_rows() : pos.rows_in_epoch;
    p.epoch_rows = epoch_rows();
    p.step = pos.step;
    p.rows_trained = pos.rows_trained;
    p.rate = r;
    p.loss = loss;
    p.eta_s = pos.epoch >= o.epochs ? 0.0 : eta(r);
    return p;
  };
  // One device synchronisation at most every 0.25 s (the bar) or every progress_every seconds.
  auto show_progress = [&](Clock::time_point now) {
    if (shown_count > 0) {
      shown_loss.add(shown_sum.item<double>(), shown_count);
      shown_sum.zero_();
      shown_count = 0;
    }
    progress.show(progress_info(rate(), shown_loss.mean()), now);
  };
  // Evaluates the test split; false when interrupted (nothing is recorded then).
  auto test_now = [&](BinaryMetrics* out) {
    train_seconds += seconds_between(seg, Clock::now());
    const auto t0 = Clock::now();
    const Evaluation ev = evaluate(model, streams, o);
    const double secs = seconds_between(t0, Clock::now());
    eval_seconds += secs;
    seg = Clock::now();
    if (ev.interrupted) return false;
    const BinaryMetrics& m = ev.m;
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    metrics.write({{"type", "test"}, {"step", pos.step}, {"epoch", pos.epoch}, {"rows", pos.rows_trained},
                   {"auc", num(m.auc)}, {"logloss", num(m.logloss)}, {"accuracy", num(m.accuracy)},
                   {"test_rows", m.rows}, {"eval_seconds", secs}});
    char buf[160];
    std::snprintf(buf, sizeof buf, "step %lld: test auc %.5f logloss %.5f accuracy %.5f",
                  static_cast<long long>(pos.step), m.auc, m.logloss, m.accuracy);
    progress.message(buf);
    *out = m;
    return true;
  };
  const auto step_what = [&] {
    return "in training step " + std::to_string(pos.step + 1) + " (a batch of " + std::to_string(o.batch_size) +
           " rows on " + device.str() + "; a smaller --batch-size needs less)";
  };

  while (!hit_max && !stopped && !ckpt_failed && pos.epoch < o.epochs) {
    std::unique_ptr<BatchStream> stream;
    try {
      stream = open_stream(streams, Split::kTrain, static_cast<uint64_t>(pos.rows_in_epoch), o.batch_size, o);
      streamed_train = true;
    } catch (const Interrupted&) {
      stopped = true;
      break;
    }
    bool epoch_done = true;
    {
      LeaseKeeper keeper(device, max_pending_for(o.ring_depth));
      for (;;) {
        if (o.max_steps >= 0 && pos.step >= o.max_steps) {
          hit_max = true;
          epoch_done = false;
          break;
        }
        if (o.stop && o.stop()) {
          stopped = true;
          epoch_done = false;
          break;
        }
        Lease lease;
        try {
          lease = next_batch(*stream, o.batch_size);
        } catch (const Interrupted&) {  // the data pipeline saw the signal first
          stopped = true;
          epoch_done = false;
          break;
        }
        if (!lease) break;
        const int64_t rows = lease.view().rows;
        const double lr = lr_at(o.lr, pos.step);
        const torch::Tensor loss = oom_guard(step_what, [&] {
          const Staged b = stage(lease.view(), model, o);
          return step->run(b.dense, b.flat_ids, b.labels, lr);
        });
        keeper.retire(std::move(lease));
        loss_sum.add_(loss);
        ++loss_count;
        ++pos.step;
        pos.rows_in_epoch += rows;
        pos.rows_trained += rows;
        rows_run += rows;
        if (pos.step % o.print_freq == 0) {
          read_loss();  // waits for the device: the interval's rate below is real
          const double now_s = train_seconds + seconds_between(seg, Clock::now());
          const double dt = now_s - interval_start_s;
          metrics.write({{"type", "train"}, {"step", pos.step}, {"epoch", pos.epoch},
                         {"rows", pos.rows_trained}, {"loss", last_loss}, {"lr", lr},
                         {"samples_per_s", dt > 0 ? static_cast<double>(rows_run - interval_start_rows) / dt : 0.0},
                         {"avg_samples_per_s", rate()}, {"time_s", now_s}});
          interval_start_s = now_s;
          interval_start_rows = rows_run;
        }
        if (progress.on()) {
          shown_sum.add_(loss);
          ++shown_count;
          const auto now = Clock::now();
          if (progress.due(now)) show_progress(now);
        }
        if (o.test_freq > 0 && pos.step % o.test_freq == 0) {
          keeper.drain();
          BinaryMetrics m;
          if (!test_now(&m)) {
            stopped = true;
            epoch_done = false;
            break;
          }
        }
        if (!ckpt_path.empty() && o.checkpoint_every > 0 && pos.step % o.checkpoint_every == 0) {
          train_seconds += seconds_between(seg, Clock::now());
          const bool ok = save();
          seg = Clock::now();
          if (!ok) {
            // Training on without a way to save it would only lose more: stop here.
            ckpt_failed = true;
            epoch_done = false;
            break;
          }
        }
      }
      keeper.drain();
    }
    wait_seconds += stream->wait_seconds();
    stream.reset();
    if (epoch_done) {
      learned_epoch_rows = pos.rows_in_epoch;
      ++pos.epoch;
      pos.rows_in_epoch = 0;
    }
  }
  read_loss();  // also waits for the device to finish the last step
  sync_device(device);
  train_seconds += seconds_between(seg, Clock::now());
  if (progress.on()) {
    if (shown_count > 0) shown_loss.add(shown_sum.item<double>(), shown_count);
    progress.final_bar(progress_info(static_cast<double>(rows_run) / std::max(train_seconds, 1e-9), shown_loss.mean()));
  }
  progress.finish();

  // A failed final checkpoint is recorded in res.checkpoint_error; the trained model is still evaluated.
  // A run stopped early (a signal, a failed checkpoint on the way) is not.
  if (!ckpt_path.empty() && !ckpt_failed) {
    if (saved_exists && (saved_by_run || resume) && saved_pos == pos) {
      res.checkpoint = ckpt_path;  // it already holds this state (nothing trained since)
    } else if (pos.step > start_step || (!stopped && !resume)) {
      save();
    }
    // Otherwise the run stopped before its first step: an earlier run's checkpoint (--restart) stays.
  }
  res.test_auc = res.test_logloss = res.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  if (!stopped && !ckpt_failed && o.evaluate && !streamed_train) {
    // Nothing was left to train (a resumed run past its last epoch, or --epochs 0). The train split still
    // goes through the data pipeline, every row skipped: raw days with first-seen ids give the test rows
    // the ids they get after a training pass only once the train rows have had theirs.
    try {
      std::unique_ptr<BatchStream> all = open_stream(
          streams, Split::kTrain, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), o.batch_size, o);
      while (Lease lease = next_batch(*all, o.batch_size)) {
        if (o.stop && o.stop()) {
          stopped = true;
          break;
        }
      }
    } catch (const Interrupted&) {
      stopped = true;
    }
  }
  if (!stopped && !ckpt_failed && o.evaluate) {
    seg = Clock::now();
    BinaryMetrics m;
    if (test_now(&m)) {
      res.test_auc = m.auc;
      res.test_logloss = m.logloss;
      res.test_accuracy = m.accuracy;
      res.test_rows = m.rows;
    } else {
      stopped = true;
    }
  }

  res.train_samples_per_s = train_seconds > 0 ? static_cast<double>(rows_run) / train_seconds : 0;
  res.rows_trained = pos.rows_trained;
  res.rows_this_run = rows_run;
  res.steps = pos.step;
  res.epochs_completed = pos.epoch;
  res.train_loss = last_loss;
  res.train_seconds = train_seconds;
  res.eval_seconds = eval_seconds;
  res.data_wait_seconds = wait_seconds;
  res.data_wait_fraction = train_seconds > 0 ? wait_seconds / train_seconds : 0;
  res.stopped = stopped;
  nlohmann::json summary = res.to_json();
  summary["type"] = "summary";
  metrics.write(summary);
  return res;
}

}  // namespace

HostAllocator pinned_host_allocator(const std::string& device) {
  if (device.rfind("cuda", 0) != 0) return {};
  struct Pool {
    std::mutex mu;
    std::unordered_map<void*, torch::Tensor> live;  // keeps each pinned block alive until freed
  };
  auto pool = std::make_shared<Pool>();
  HostAllocator a;
  a.alloc = [pool](size_t n) -> void* {
    torch::Tensor t = torch::empty({static_cast<int64_t>(n)}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
    void* p = t.data_ptr();
    std::lock_guard<std::mutex> g(pool->mu);
    pool->live.emplace(p, std::move(t));
    return p;
  };
  a.free = [pool](void* p) {
    std::lock_guard<std::mutex> g(pool->mu);
    pool->live.erase(p);
  };
  return a;
}

TrainResult train(const TrainOptions& options, const StreamFactory& streams) {
  TrainOptions o = options;
  if (o.lr.base_lr <= 0) o.lr.base_lr = default_lr(o.optimizer, o.batch_size);
  if (o.lr.num_warmup_steps < 0) o.lr.num_warmup_steps = default_warmup_steps(o.optimizer, o.batch_size);
  try {
    return train_impl(o, streams);
  } catch (const c10::Error& e) {
    // Any libtorch error that got this far: its message, without libtorch's backtrace.
    throw Error(torch_message(e));
  }
}

namespace {

nlohmann::json bench_impl(const BenchOptions& o) {
  if (o.batch_size <= 0 || o.steps <= 0 || o.warmup_steps < 0 || o.distinct_batches <= 0)
    throw Error("--batch-size, --steps and the number of batches must be positive");
  validate_arch(o.arch);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);
  if (device.is_cpu()) reserve_blas_buffers();

  check_model_fits(o.arch, o.optimizer, device);
  Dlrm model(o.arch, o.seed, device, o.precision);
  Optimizer opt(o.optimizer, model);
  const std::unique_ptr<TrainStep> step = make_train_step(model, opt, o.step, o.cuda_graph);

  // Batches resident on the device, generated once: dense features in the range of ln(x+1) values, ids
  // uniform in each table, labels with a 25% click rate.
  const int64_t nb = o.distinct_batches, bs = o.batch_size;
  at::Generator gen = at::detail::createCPUGenerator(o.seed + 2);
  std::vector<torch::Tensor> dense, sparse, labels;
  oom_guard(
      [&] {
        return "allocating the benchmark batches (" + std::to_string(nb) + " batches of " + std::to_string(bs) +
               " rows = " + bytes_text(static_cast<double>(nb) * static_cast<double>(bs) * kRowBytes) + " on " +
               device.str() + ")";
      },
      [&] {
        torch::NoGradGuard no_grad;
        for (int64_t i = 0; i < nb; ++i) {
          dense.push_back((torch::rand({bs, kNumDense}, gen) * 8.0).to(device));
          std::vector<torch::Tensor> cols;
          for (int64_t n : o.arch.table_sizes)
            cols.push_back(torch::randint(0, n, {bs, 1}, gen, torch::TensorOptions().dtype(torch::kInt64)));
          sparse.push_back(torch::cat(cols, 1).to(torch::kInt32).contiguous().to(device));
          labels.push_back((torch::rand({bs}, gen) < 0.25).to(torch::kFloat32).to(device));
        }
      });
  torch::Tensor loss;
  auto run = [&](int64_t steps, int64_t first) {
    oom_guard(
        [&] {
          return "in a training step (a batch of " + std::to_string(bs) + " rows on " + device.str() +
                 "; a smaller --batch-size needs less)";
        },
        [&] {
          for (int64_t s = 0; s < steps; ++s) {
            check_interrupt();  // Ctrl-C ends a long benchmark (exit status 130)
            const int64_t i = (first + s) % nb;
            loss = step->run(dense[i], model.flat_ids(sparse[i]), labels[i], o.lr);
          }
        });
  };
  run(o.warmup_steps, 0);
  if (loss.defined()) (void)loss.item<double>();
  sync_device(device);
  const auto t0 = Clock::now();
  run(o.steps, o.warmup_steps);
  const double final_loss = loss.item<double>();
  sync_device(device);
  const double secs = seconds_between(t0, Clock::now());

  int64_t table_rows = 0;
  for (int64_t n : o.arch.table_sizes) table_rows += n;
  return {{"mode", "bench-synthetic"},
          {"samples_per_s", static_cast<double>(o.steps * bs) / secs},
          {"step_ms", 1000.0 * secs / static_cast<double>(o.steps)},
          {"seconds", secs},
          {"steps", o.steps},
          {"warmup_steps", o.warmup_steps},
          {"batch_size", bs},
          {"device", device.str()},
          {"precision", precision_name(o.precision)},
          {"optimizer", optimizer_name(o.optimizer)},
          {"step", step->name()},
          {"threads", torch::get_num_threads()},
          {"emb_dim", o.arch.emb_dim},
          {"bot_mlp", o.arch.bot_mlp},
          {"top_mlp", o.arch.top_mlp},
          {"table_rows", table_rows},
          {"final_loss", final_loss}};
}

}  // namespace

nlohmann::json bench_synthetic(const BenchOptions& o) {
  try {
    return bench_impl(o);
  } catch (const c10::Error& e) {
    throw Error(torch_message(e));
  }
}

}  // namespace sluice::train
