// `sluice train` (DLRM training, libtorch) and `sluice plot` (metrics curves through matplotlib).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/validators.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "util/notice.hpp"

extern char** environ;

namespace sluice::cli {

namespace {

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
  std::string engine = "auto";
  std::string precision = "fp32";
  std::string checkpoint;
  bool resume = false;
  bool auto_resume = false;
  bool restart = false;
  int64_t checkpoint_every = 0;
  int progress_every = 10;
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
  o.engine = a.engine;
  o.precision = train::parse_precision(a.precision);
  o.checkpoint_dir = a.checkpoint;
  o.resume = a.resume;
  o.auto_resume = a.auto_resume;
  o.restart = a.restart;
  o.checkpoint_every = a.checkpoint_every;
  o.metrics_path = a.metrics;
  o.print_freq = a.print_freq;
  o.progress = stderr_is_tty();
  o.progress_every = o.progress ? 0 : a.progress_every;  // a log file gets a plain line now and then
  o.evaluate = !a.no_eval;
  o.ring_depth = a.ring_depth;
  o.pinned_memory = !a.no_pinned;
  o.max_ind_range = a.max_ind_range;
  o.online_ids = a.online_ids;
  o.vocab_dir = a.vocab_dir;
  // main() records SIGINT/SIGTERM (InterruptGuard): the trainer finishes its step, writes its
  // checkpoint and returns; the results are printed, then the run ends with 128 + the signal.
  o.stop = [] { return pending_interrupt() != 0; };

  const train::TrainResult r = train::train_dataset(o);
  std::fprintf(stderr, "sluice train: %lld rows in %.1f s (%.0f samples/s, %.1f%% waiting for data)\n",
               static_cast<long long>(r.rows_this_run), r.train_seconds, r.train_samples_per_s,
               100.0 * r.data_wait_fraction);
  std::printf("%s\n", r.to_json().dump().c_str());
  std::fflush(stdout);
  if (r.stopped) {
    const std::string at = "stopped at step " + std::to_string(r.steps);
    if (!r.checkpoint_error.empty()) notice("error: " + r.checkpoint_error);
    else if (!r.checkpoint.empty()) notice(at + "; the checkpoint is " + r.checkpoint + ", continue with --resume");
    else if (!a.checkpoint.empty()) notice(at + ", before the first training step: no checkpoint was written");
    else notice(at + " without a checkpoint (no --checkpoint DIR was given)");
    const int sig = pending_interrupt();
    throw Interrupted(sig != 0 ? sig : SIGINT);
  }
  if (!r.checkpoint_error.empty()) throw Error(r.checkpoint_error);
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
  c->add_option("--arch-sparse-feature-size", a->emb_dim, "Embedding size d (overrides the preset)")
      ->check(PositiveInt<int64_t>());
  c->add_option("--arch-mlp-bot", a->mlp_bot, "Bottom MLP widths, e.g. 13-512-256-64-16");
  c->add_option("--arch-mlp-top", a->mlp_top, "Top MLP widths without the input, e.g. 512-256-1");
  c->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--batch-size,--mini-batch-size", a->batch_size, "Training batch size")->capture_default_str()
      ->check(PositiveInt<int64_t>());
  c->add_option("--test-batch-size", a->test_batch_size, "Evaluation batch size (default 16384)")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--lr,--learning-rate", a->lr, "Learning rate")->capture_default_str()->check(PositiveReal());
  c->add_option("--optimizer", a->optimizer, "sgd or adagrad (row-wise state for the embeddings)")
      ->capture_default_str();
  c->add_option("--epochs,--nepochs", a->epochs, "Passes over the training split")->capture_default_str()
      ->check(NonNegativeInt<int>());
  c->add_option("--max-steps", a->max_steps, "Stop after this many optimiser steps in total (-1: no limit)")
      ->check(IntRange<int64_t>(-1, std::numeric_limits<int64_t>::max(), "-1 (no limit) or a non-negative integer"));
  c->add_option("--test-freq", a->test_freq, "Evaluate on the test split every N steps (0: at the end only)")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--seed", a->seed, "Seed of the initialisation")->capture_default_str()
      ->check(NonNegativeInt<uint64_t>());
  c->add_option("--threads", a->threads, "libtorch threads (0: its default)")->check(NonNegativeInt<int>());
  c->add_option("--engine", a->engine,
                "Raw data: the engine that preprocesses it: auto (cuda when a GPU is usable), cpu or cuda; with "
                "cuda and --device cuda the batches are made in GPU memory")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda", "fpga"}));
  c->add_option("--data-threads", a->data_threads, "Preprocessing threads of the data stream (0: all cores)")
      ->check(NonNegativeInt<int>());
  c->add_option("--precision", a->precision, "fp32, tf32 or bf16")->capture_default_str();
  c->add_option("--checkpoint", a->checkpoint, "Checkpoint directory (written at the end, every --checkpoint-every steps and on "
                "SIGINT/SIGTERM; one already there needs --resume, --auto-resume or --restart)");
  c->add_flag("--resume", a->resume, "Continue from the checkpoint in --checkpoint DIR");
  c->add_flag("--auto-resume", a->auto_resume,
              "Continue from the checkpoint in --checkpoint DIR when there is one, else start afresh");
  c->add_flag("--restart", a->restart, "Start over, replacing the checkpoint in --checkpoint DIR");
  c->add_option("--checkpoint-every", a->checkpoint_every, "Also write a checkpoint every N steps")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--metrics", a->metrics, "Write metrics as JSON lines to FILE");
  c->add_option("--progress-every", a->progress_every,
                "When stderr is not a terminal: a progress line every N seconds (0: none)")
      ->capture_default_str()->check(NonNegativeInt<int>());
  c->add_option("--print-freq", a->print_freq, "Read the training loss back every N steps")->capture_default_str()
      ->check(PositiveInt<int64_t>());
  c->add_option("--max-ind-range", a->max_ind_range, "Cap every embedding table at N rows (ids modulo N)")
      ->check(NonNegativeInt<uint64_t>());
  c->add_option("--online-ids", a->online_ids, "Raw data: first-seen (default), modulo or vocab");
  c->add_option("--vocab-dir", a->vocab_dir, "Raw data with --online-ids vocab: a `sluice prep` output");
  c->add_option("--ring-depth", a->ring_depth, "Batches prepared ahead of the trainer")->capture_default_str()
      ->check(PositiveInt<int>());
  c->add_flag("--no-pinned", a->no_pinned, "GPU runs: keep the batch ring in pageable host memory (default: page-locked)");
  c->add_option("--lr-num-warmup-steps", a->warmup, "Linear warm-up steps")->check(NonNegativeInt<int64_t>());
  c->add_option("--lr-decay-start-step", a->decay_start, "Step at which the polynomial decay starts")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--lr-num-decay-steps", a->decay_steps, "Steps of the polynomial (power 2) decay")
      ->check(NonNegativeInt<int64_t>());
  c->add_flag("--no-eval", a->no_eval, "Skip the final evaluation");
  c->add_flag("--bench-synthetic", a->bench,
              "Benchmark training alone: random batches resident on the device, no data pipeline");
  c->add_option("--table-sizes", a->table_sizes, "Benchmark tables: kaggle, N or 26 comma-separated sizes")
      ->capture_default_str();
  c->add_option("--steps", a->steps, "Benchmark: timed steps")->capture_default_str()
      ->check(PositiveInt<int64_t>());
  c->add_option("--warmup-steps", a->bench_warmup, "Benchmark: untimed steps first")->capture_default_str()
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--bench-batches", a->bench_batches, "Benchmark: distinct batches cycled through")
      ->capture_default_str()->check(PositiveInt<int64_t>());
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
