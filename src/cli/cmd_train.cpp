// `sluice train` (DLRM training, libtorch) and `sluice plot` (metrics curves through matplotlib).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"

extern char** environ;

namespace sluice::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) { g_stop.store(true); }

// SIGINT/SIGTERM ask the trainer to write a checkpoint and stop; a second signal acts as usual.
class StopSignals {
 public:
  StopSignals() {
    struct sigaction sa{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_{}, old_term_{};
};

struct TrainArgs {
  std::string data;
  std::string preset = "kaggle";
  int64_t emb_dim = 0;
  std::string mlp_bot, mlp_top;
  std::string device = "cpu";
  int64_t batch_size = 2048;
  int64_t test_batch_size = 0;
  double lr = 0.1;
  std::string optimizer = "sgd";
  int epochs = 1;
  int64_t max_steps = -1;
  int64_t test_freq = 0;
  uint64_t seed = 123;
  int threads = 0;
  int data_threads = 0;
  std::string precision = "fp32";
  std::string checkpoint;
  bool resume = false;
  int64_t checkpoint_every = 0;
  std::string metrics;
  int64_t print_freq = 100;
  uint64_t max_ind_range = 0;
  std::string online_ids;
  std::string vocab_dir;
  int ring_depth = 4;
  bool no_pinned = false;
  int64_t warmup = 0, decay_start = 0, decay_steps = 0;
  bool no_eval = false;
  // benchmark
  bool bench = false;
  std::string table_sizes = "kaggle";
  int64_t steps = 200;
  int64_t bench_warmup = 20;
  int64_t bench_batches = 16;
};

train::Arch arch_from(const TrainArgs& a) {
  train::Arch arch = train::preset_arch(a.preset);
  train::apply_arch_overrides(arch, a.emb_dim, a.mlp_bot, a.mlp_top);
  return arch;
}

void run_bench(const TrainArgs& a) {
  train::BenchOptions b;
  b.arch = arch_from(a);
  b.arch.table_sizes = train::parse_table_sizes(a.table_sizes, a.max_ind_range);
  b.device = a.device;
  b.batch_size = a.batch_size;
  b.steps = a.steps;
  b.warmup_steps = a.bench_warmup;
  b.distinct_batches = a.bench_batches;
  b.lr = a.lr;
  b.optimizer = train::parse_optimizer(a.optimizer);
  b.precision = train::parse_precision(a.precision);
  b.seed = a.seed;
  b.threads = a.threads;
  const nlohmann::json j = train::bench_synthetic(b);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

void run_train(const TrainArgs& a) {
  if (a.bench) {
    run_bench(a);
    return;
  }
  if (a.data.empty()) throw Error("sluice train: --data DIR is required (or --bench-synthetic)");
  train::TrainOptions o;
  o.arch = arch_from(a);
  o.data_dir = a.data;
  o.device = a.device;
  o.batch_size = a.batch_size;
  o.test_batch_size = a.test_batch_size;
  o.lr.base_lr = a.lr;
  o.lr.num_warmup_steps = a.warmup;
  o.lr.decay_start_step = a.decay_start;
  o.lr.num_decay_steps = a.decay_steps;
  o.optimizer = train::parse_optimizer(a.optimizer);
  o.epochs = a.epochs;
  o.max_steps = a.max_steps;
  o.test_freq = a.test_freq;
  o.seed = a.seed;
  o.threads = a.threads;
  o.data_threads = a.data_threads;
  o.precision = train::parse_precision(a.precision);
  o.checkpoint_dir = a.checkpoint;
  o.resume = a.resume;
  o.checkpoint_every = a.checkpoint_every;
  o.metrics_path = a.metrics;
  o.print_freq = a.print_freq;
  o.progress = stderr_is_tty();
  o.evaluate = !a.no_eval;
  o.ring_depth = a.ring_depth;
  o.pinned_memory = !a.no_pinned;
  o.max_ind_range = a.max_ind_range;
  o.online_ids = a.online_ids;
  o.vocab_dir = a.vocab_dir;
  o.stop = &g_stop;

  g_stop.store(false);
  train::TrainResult r;
  {
    StopSignals signals;
    r = train::train_dataset(o);
  }
  std::fprintf(stderr, "sluice train: %lld rows in %.1f s (%.0f samples/s, %.1f%% waiting for data)\n",
               static_cast<long long>(r.rows_this_run), r.train_seconds, r.train_samples_per_s,
               100.0 * r.data_wait_fraction);
  std::printf("%s\n", r.to_json().dump().c_str());
  std::fflush(stdout);
  if (r.stopped)
    throw Error("interrupted" + (r.checkpoint.empty() ? std::string(" (no --checkpoint given)")
                                                      : "; checkpoint written to " + r.checkpoint +
                                                            ", continue with --resume"));
}

// ---- plot ---------------------------------------------------------------------------------------

std::string find_plot_script() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("SLUICE_PLOT_SCRIPT")) candidates.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path dir = exe.parent_path();
    candidates.push_back(dir / "scripts" / "plot_metrics.py");
    candidates.push_back(dir.parent_path() / "scripts" / "plot_metrics.py");
    candidates.push_back(dir.parent_path() / "share" / "sluice" / "plot_metrics.py");
  }
  // The source tree this binary was built from.
  candidates.push_back(fs::path(__FILE__).parent_path().parent_path().parent_path() / "scripts" /
                       "plot_metrics.py");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c.string();
  throw Error("sluice plot: cannot find scripts/plot_metrics.py (set SLUICE_PLOT_SCRIPT to its path)");
}

void run_plot(const std::string& metrics, const std::string& out) {
  if (!std::filesystem::is_regular_file(metrics)) throw Error("sluice plot: no metrics file " + metrics);
  const std::string script = find_plot_script();
  std::vector<std::string> args = {"python3", script, metrics, "-o", out};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "python3", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) throw Error("sluice plot: cannot run python3 (is it installed?)");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error("sluice plot: waiting for python3 failed");
  }
  if (!WIFEXITED(status)) throw Error("sluice plot: python3 was killed");
  const int code = WEXITSTATUS(status);
  if (code == 3) throw Error("sluice plot: matplotlib is not installed for python3 (pip install matplotlib)");
  if (code == 127) throw Error("sluice plot: python3 not found");
  if (code != 0) throw Error("sluice plot: " + script + " failed (exit code " + std::to_string(code) + ")");
  std::printf("%s\n", out.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* c = app.add_subcommand(
      "train", "Train Meta's DLRM (libtorch) on a dataset; the last stdout line is a JSON summary");
  c->add_option("--data", a->data, "A `sluice prep` output or a folder of raw day files");
  c->add_option("--preset", a->preset, "Model sizes: kaggle, terabyte or mlperf")->capture_default_str();
  c->add_option("--arch-sparse-feature-size", a->emb_dim, "Embedding size d (overrides the preset)");
  c->add_option("--arch-mlp-bot", a->mlp_bot, "Bottom MLP widths, e.g. 13-512-256-64-16");
  c->add_option("--arch-mlp-top", a->mlp_top, "Top MLP widths without the input, e.g. 512-256-1");
  c->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--batch-size,--mini-batch-size", a->batch_size, "Training batch size")->capture_default_str();
  c->add_option("--test-batch-size", a->test_batch_size, "Evaluation batch size (default 16384)");
  c->add_option("--lr,--learning-rate", a->lr, "Learning rate")->capture_default_str();
  c->add_option("--optimizer", a->optimizer, "sgd or adagrad (row-wise state for the embeddings)")
      ->capture_default_str();
  c->add_option("--epochs,--nepochs", a->epochs, "Passes over the training split")->capture_default_str();
  c->add_option("--max-steps", a->max_steps, "Stop after this many optimiser steps in total");
  c->add_option("--test-freq", a->test_freq, "Evaluate on the test split every N steps (0: at the end only)");
  c->add_option("--seed", a->seed, "Seed of the initialisation")->capture_default_str();
  c->add_option("--threads", a->threads, "libtorch threads (0: its default)");
  c->add_option("--data-threads", a->data_threads, "Preprocessing threads of the data stream (0: all cores)");
  c->add_option("--precision", a->precision, "fp32, tf32 or bf16")->capture_default_str();
  c->add_option("--checkpoint", a->checkpoint, "Checkpoint directory (written at the end and on SIGINT/SIGTERM)");
  c->add_flag("--resume", a->resume, "Continue from the checkpoint in --checkpoint DIR");
  c->add_option("--checkpoint-every", a->checkpoint_every, "Also write a checkpoint every N steps");
  c->add_option("--metrics", a->metrics, "Write metrics as JSON lines to FILE");
  c->add_option("--print-freq", a->print_freq, "Read the training loss back every N steps")->capture_default_str();
  c->add_option("--max-ind-range", a->max_ind_range, "Cap every embedding table at N rows (ids modulo N)");
  c->add_option("--online-ids", a->online_ids, "Raw data: first-seen (default), modulo or vocab");
  c->add_option("--vocab-dir", a->vocab_dir, "Raw data with --online-ids vocab: a `sluice prep` output");
  c->add_option("--ring-depth", a->ring_depth, "Batches prepared ahead of the trainer")->capture_default_str();
  c->add_flag("--no-pinned", a->no_pinned, "GPU runs: keep the batch ring in pageable host memory (default: page-locked)");
  c->add_option("--lr-num-warmup-steps", a->warmup, "Linear warm-up steps");
  c->add_option("--lr-decay-start-step", a->decay_start, "Step at which the polynomial decay starts");
  c->add_option("--lr-num-decay-steps", a->decay_steps, "Steps of the polynomial (power 2) decay");
  c->add_flag("--no-eval", a->no_eval, "Skip the final evaluation");
  c->add_flag("--bench-synthetic", a->bench,
              "Benchmark training alone: random batches resident on the device, no data pipeline");
  c->add_option("--table-sizes", a->table_sizes, "Benchmark tables: kaggle, N or 26 comma-separated sizes")
      ->capture_default_str();
  c->add_option("--steps", a->steps, "Benchmark: timed steps")->capture_default_str();
  c->add_option("--warmup-steps", a->bench_warmup, "Benchmark: untimed steps first")->capture_default_str();
  c->add_option("--bench-batches", a->bench_batches, "Benchmark: distinct batches cycled through")
      ->capture_default_str();
  c->callback([a] { run_train(*a); });
}

void add_plot_command(CLI::App& app) {
  auto metrics = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>("metrics.png");
  CLI::App* c = app.add_subcommand("plot", "Plot a `sluice train --metrics` file (loss, AUC, samples/s)");
  c->add_option("metrics", *metrics, "Metrics file (JSON lines)")->required();
  c->add_option("-o,--output", *out, "Output image")->capture_default_str();
  c->callback([metrics, out] { run_plot(*metrics, *out); });
}

}  // namespace sluice::cli
