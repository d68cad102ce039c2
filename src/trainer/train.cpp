// The training loop: batches from a BatchStream, evaluation, checkpoints, metrics, progress, and the
// synthetic training-only benchmark.
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <thread>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/metrics.hpp"
#include "trainer/dlrm.hpp"

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

BinaryMetrics evaluate(const Dlrm& model, const StreamFactory& streams, const TrainOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t bs = o.test_batch_size > 0 ? o.test_batch_size : kDefaultTestBatch;
  std::unique_ptr<BatchStream> stream = streams(Split::kTest, 0, bs);
  if (!stream) throw Error("no test stream");
  std::vector<torch::Tensor> logits, labels;
  {
    LeaseKeeper keeper(model.device(), max_pending_for(o.ring_depth));
    while (Lease lease = stream->next()) {
      Staged b = stage(lease.view(), model, o);
      logits.push_back(model.forward(b.dense, model.gather(b.flat_ids)));
      labels.push_back(b.labels.clone());
      keeper.retire(std::move(lease));
    }
  }
  if (logits.empty()) return metrics_from_logits(nullptr, nullptr, 0);
  const torch::Tensor z = torch::cat(logits).to(torch::kCPU).contiguous();
  const torch::Tensor y = torch::cat(labels).to(torch::kCPU).contiguous();
  return metrics_from_logits(z.data_ptr<float>(), y.data_ptr<float>(), static_cast<size_t>(z.numel()));
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

class ProgressBar {
 public:
  explicit ProgressBar(bool on) : on_(on) {}
  void update(int epoch, int epochs, int64_t rows_in_epoch, int64_t total, int64_t step, double rate,
              double loss, bool force = false) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!force && drawn_ && seconds_between(last_, now) < 0.25) return;
    last_ = now;
    drawn_ = true;
    char bar[32];
    const int width = 24;
    int filled = 0;
    double pct = -1;
    if (total > 0) {
      pct = std::min(1.0, static_cast<double>(rows_in_epoch) / static_cast<double>(total));
      filled = static_cast<int>(pct * width);
    }
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    char line[256];
    if (pct >= 0)
      std::snprintf(line, sizeof line, "\r epoch %d/%d [%s] %5.1f%%  step %lld  %.0f samples/s  loss %.5f ",
                    epoch + 1, epochs, bar, pct * 100, static_cast<long long>(step), rate, loss);
    else
      std::snprintf(line, sizeof line, "\r epoch %d/%d  rows %lld  step %lld  %.0f samples/s  loss %.5f ",
                    epoch + 1, epochs, static_cast<long long>(rows_in_epoch), static_cast<long long>(step),
                    rate, loss);
    std::fputs(line, stderr);
    std::fflush(stderr);
  }
  void message(const std::string& m) {
    if (!on_) return;
    finish();
    std::fprintf(stderr, " %s\n", m.c_str());
  }
  void finish() {
    if (on_ && drawn_) {
      std::fputc('\n', stderr);
      drawn_ = false;
    }
  }

 private:
  bool on_;
  bool drawn_ = false;
  Clock::time_point last_{};
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
};

void validate_options(const TrainOptions& o) {
  if (o.batch_size <= 0) throw Error("--batch-size must be positive");
  if (o.test_batch_size < 0) throw Error("--test-batch-size must be positive");
  if (o.epochs < 0) throw Error("--epochs must not be negative");
  if (o.print_freq <= 0) throw Error("--print-freq must be positive");
  if (o.test_freq < 0 || o.checkpoint_every < 0) throw Error("step frequencies must not be negative");
  if (o.ring_depth < 1) throw Error("--ring-depth must be at least 1");
  if (o.resume && o.checkpoint_dir.empty()) throw Error("--resume needs --checkpoint DIR");
  validate_arch(o.arch);
  validate_schedule(o.lr);
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

TrainResult train(const TrainOptions& o, const StreamFactory& streams) {
  validate_options(o);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);

  std::string ckpt_path;
  if (!o.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.checkpoint_dir, ec);
    if (ec) throw Error("cannot create checkpoint directory " + o.checkpoint_dir + ": " + ec.message());
    ckpt_path = (std::filesystem::path(o.checkpoint_dir) / kCheckpointFile).string();
  }

  Position pos;
  CheckpointHeader header;
  if (o.resume) {
    if (!std::filesystem::exists(ckpt_path))
      throw Error("--resume: no checkpoint at " + ckpt_path);
    header = read_checkpoint_header(ckpt_path);
    check_compatible(header, o);
    try {
      const auto& s = header.meta.at("position");
      pos.step = s.at("step").get<int64_t>();
      pos.epoch = s.at("epoch").get<int>();
      pos.rows_in_epoch = s.at("rows_in_epoch").get<int64_t>();
      pos.rows_trained = s.at("rows_trained").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw Error("checkpoint " + ckpt_path + " has bad metadata (" + e.what() + ")");
    }
  }
  const uint64_t seed = o.resume ? header.meta.value("seed", o.seed) : o.seed;

  Dlrm model(o.arch, seed, device, o.precision);
  Optimizer opt(o.optimizer, model);
  if (o.resume) {
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

  MetricsLog metrics(o.metrics_path, o.resume);
  ProgressBar progress(o.progress);

  auto save = [&] {
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
    write_checkpoint(ckpt_path, meta, state_tensors(model, opt));
  };

  TrainResult res;
  res.device = device.str();
  res.precision = precision_name(o.precision);
  res.optimizer = optimizer_name(o.optimizer);

  const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  torch::Tensor loss_sum = zero.clone();
  int64_t loss_count = 0;
  double last_loss = std::numeric_limits<double>::quiet_NaN();
  double train_seconds = 0, eval_seconds = 0, wait_seconds = 0;
  int64_t rows_run = 0;
  double interval_start_s = 0;     // training time at the previous metrics line
  int64_t interval_start_rows = 0;
  bool stopped = false, hit_max = false;
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
  auto test_now = [&] {
    train_seconds += seconds_between(seg, Clock::now());
    const auto t0 = Clock::now();
    const BinaryMetrics m = evaluate(model, streams, o);
    const double secs = seconds_between(t0, Clock::now());
    eval_seconds += secs;
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    metrics.write({{"type", "test"}, {"step", pos.step}, {"epoch", pos.epoch}, {"rows", pos.rows_trained},
                   {"auc", num(m.auc)}, {"logloss", num(m.logloss)}, {"accuracy", num(m.accuracy)},
                   {"test_rows", m.rows}, {"eval_seconds", secs}});
    char buf[160];
    std::snprintf(buf, sizeof buf, "step %lld: test auc %.5f logloss %.5f accuracy %.5f",
                  static_cast<long long>(pos.step), m.auc, m.logloss, m.accuracy);
    progress.message(buf);
    seg = Clock::now();
    return m;
  };

  while (!hit_max && !stopped && pos.epoch < o.epochs) {
    std::unique_ptr<BatchStream> stream =
        streams(Split::kTrain, static_cast<uint64_t>(pos.rows_in_epoch), o.batch_size);
    if (!stream) throw Error("no training stream");
    bool epoch_done = true;
    {
      LeaseKeeper keeper(device, max_pending_for(o.ring_depth));
      for (;;) {
        if (o.max_steps >= 0 && pos.step >= o.max_steps) {
          hit_max = true;
          epoch_done = false;
          break;
        }
        if (o.stop && o.stop->load()) {
          stopped = true;
          epoch_done = false;
          break;
        }
        Lease lease = stream->next();
        if (!lease) break;
        const Staged b = stage(lease.view(), model, o);
        const double lr = lr_at(o.lr, pos.step);
        torch::Tensor loss = train_step(model, opt, b.dense, b.flat_ids, b.labels, lr);
        keeper.retire(std::move(lease));
        loss_sum.add_(loss);
        ++loss_count;
        ++pos.step;
        pos.rows_in_epoch += b.rows;
        pos.rows_trained += b.rows;
        rows_run += b.rows;
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
        progress.update(pos.epoch, o.epochs, pos.rows_in_epoch, o.train_rows_hint, pos.step, rate(),
                        last_loss);
        if (o.test_freq > 0 && pos.step % o.test_freq == 0) {
          keeper.drain();
          test_now();
        }
        if (!ckpt_path.empty() && o.checkpoint_every > 0 && pos.step % o.checkpoint_every == 0) {
          train_seconds += seconds_between(seg, Clock::now());
          save();
          seg = Clock::now();
        }
      }
      keeper.drain();
    }
    wait_seconds += stream->wait_seconds();
    stream.reset();
    if (epoch_done) {
      ++pos.epoch;
      pos.rows_in_epoch = 0;
    }
  }
  read_loss();  // also waits for the device to finish the last step
  sync_device(device);
  train_seconds += seconds_between(seg, Clock::now());
  {
    const bool all_done = pos.epoch >= o.epochs && o.epochs > 0;
    progress.update(all_done ? o.epochs - 1 : pos.epoch, o.epochs,
                    all_done && o.train_rows_hint > 0 ? o.train_rows_hint : pos.rows_in_epoch, o.train_rows_hint,
                    pos.step, static_cast<double>(rows_run) / std::max(train_seconds, 1e-9), last_loss, true);
  }
  progress.finish();

  if (!ckpt_path.empty()) {
    save();
    res.checkpoint = ckpt_path;
  }
  if (!stopped && o.evaluate) {
    seg = Clock::now();
    const BinaryMetrics m = test_now();
    res.test_auc = m.auc;
    res.test_logloss = m.logloss;
    res.test_accuracy = m.accuracy;
    res.test_rows = m.rows;
  } else {
    res.test_auc = res.test_logloss = res.test_accuracy = std::numeric_limits<double>::quiet_NaN();
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

nlohmann::json bench_synthetic(const BenchOptions& o) {
  if (o.batch_size <= 0 || o.steps <= 0 || o.warmup_steps < 0 || o.distinct_batches <= 0)
    throw Error("--batch-size, --steps and the number of batches must be positive");
  validate_arch(o.arch);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);

  Dlrm model(o.arch, o.seed, device, o.precision);
  Optimizer opt(o.optimizer, model);

  // Batches resident on the device, generated once: dense features in the range of ln(x+1) values, ids
  // uniform in each table, labels with a 25% click rate.
  const int64_t nb = o.distinct_batches, bs = o.batch_size;
  at::Generator gen = at::detail::createCPUGenerator(o.seed + 2);
  std::vector<torch::Tensor> dense, sparse, labels;
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < nb; ++i) {
      dense.push_back((torch::rand({bs, kNumDense}, gen) * 8.0).to(device));
      std::vector<torch::Tensor> cols;
      for (int64_t n : o.arch.table_sizes)
        cols.push_back(torch::randint(0, n, {bs, 1}, gen, torch::TensorOptions().dtype(torch::kInt64)));
      sparse.push_back(torch::cat(cols, 1).to(torch::kInt32).contiguous().to(device));
      labels.push_back((torch::rand({bs}, gen) < 0.25).to(torch::kFloat32).to(device));
    }
  }
  torch::Tensor loss;
  auto run = [&](int64_t steps, int64_t first) {
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t i = (first + s) % nb;
      loss = train_step(model, opt, dense[i], model.flat_ids(sparse[i]), labels[i], o.lr);
    }
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
          {"threads", torch::get_num_threads()},
          {"emb_dim", o.arch.emb_dim},
          {"bot_mlp", o.arch.bot_mlp},
          {"top_mlp", o.arch.top_mlp},
          {"table_rows", table_rows},
          {"final_loss", final_loss}};
}

}  // namespace sluice::train
