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

// The options of `sluice train` bind TrainOptions' fields directly; what needs parsing (the model
// sizes, the optimiser and precision names, the learning rate's default) is resolved in run_train().
struct TrainArgs {
  train::TrainOptions o;
  std::string preset = "kaggle";
  int64_t emb_dim = 0;
  double emb_init = 0;  // 0: the recipe's
  std::string emb_dtype = "fp32";
  std::string mlp_bot, mlp_top;
  double lr = 0;        // 0: the recipe's (train::default_lr)
  std::string optimizer = "adagrad";
  std::string precision = "auto";
  int progress_every = 10;
  bool no_pinned = false, no_eval = false, no_graph = false;
  int64_t warmup = -1;  // -1: the recipe's
  // benchmark
  bool bench = false;
  std::string table_sizes = "kaggle";
  int64_t steps = 200;
  int64_t bench_warmup = 20;
  int64_t bench_batches = 16;
};

// TF32 matrix products on GPUs (docs/trainer.md: the AUC moves less than between seeds), fp32 elsewhere.
std::string default_precision(const std::string& device) { return device.rfind("cuda", 0) == 0 ? "tf32" : "fp32"; }

train::Arch arch_from(const TrainArgs& a) {
  train::Arch arch = train::preset_arch(a.preset);
  train::apply_arch_overrides(arch, a.emb_dim, a.mlp_bot, a.mlp_top);
  if (a.emb_init > 0) arch.emb_init_scale = a.emb_init;
  arch.emb_dtype = train::parse_emb_dtype(a.emb_dtype);
  return arch;
}

void run_bench(const TrainArgs& a) {
  train::BenchOptions b;
  b.arch = arch_from(a);
  if (a.o.data_dir.empty()) b.arch.table_sizes = train::parse_table_sizes(a.table_sizes, a.o.max_ind_range);
  b.device = a.o.device;
  b.batch_size = a.o.batch_size;
  b.steps = a.steps;
  b.warmup_steps = a.bench_warmup;
  b.distinct_batches = a.bench_batches;
  b.optimizer = train::parse_optimizer(a.optimizer);
  b.lr = a.lr > 0 ? a.lr : train::default_lr(b.optimizer, b.batch_size);
  b.precision = train::parse_precision(a.precision == "auto" ? default_precision(b.device) : a.precision);
  b.step = a.o.step;
  b.cuda_graph = !a.no_graph;
  b.seed = a.o.seed;
  b.threads = a.o.threads;
  b.trace_path = a.o.trace_path;
  b.trace_first = a.o.trace_first;
  b.trace_steps = a.o.trace_steps;
  // With --data: the dataset's own batches (and table sizes), resident on the device.
  const nlohmann::json j = a.o.data_dir.empty() ? train::bench_synthetic(b) : train::bench_dataset(b, a.o);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

void run_train(const TrainArgs& a) {
  if (a.bench) {
    run_bench(a);
    return;
  }
  if (a.o.data_dir.empty()) throw Error("sluice train: --data DIR is required (or --bench-synthetic)");
  train::TrainOptions o = a.o;
  o.arch = arch_from(a);
  o.optimizer = train::parse_optimizer(a.optimizer);
  o.precision = train::parse_precision(a.precision == "auto" ? default_precision(o.device) : a.precision);
  o.lr.base_lr = a.lr > 0 ? a.lr : train::default_lr(o.optimizer, o.batch_size);
  o.lr.num_warmup_steps = a.warmup >= 0 ? a.warmup : train::default_warmup_steps(o.optimizer, o.batch_size);
  o.cuda_graph = !a.no_graph;
  o.progress = stderr_is_tty();
  o.progress_every = o.progress ? 0 : a.progress_every;  // a log file gets a plain line now and then
  o.evaluate = !a.no_eval;
  o.pinned_memory = !a.no_pinned;
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
    else if (!o.checkpoint_dir.empty()) notice(at + ", before the first training step: no checkpoint was written");
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
  train::TrainOptions& o = a->o;
  c->add_option("--data", o.data_dir, "A `sluice prep` output or a folder of raw day files");
  c->add_option("--preset", a->preset, "Model sizes: kaggle, terabyte or mlperf")->capture_default_str();
  c->add_option("--arch-sparse-feature-size", a->emb_dim, "Embedding size d (overrides the preset)")
      ->check(PositiveInt<int64_t>());
  c->add_option("--arch-mlp-bot", a->mlp_bot, "Bottom MLP widths, e.g. 13-512-256-64-16");
  c->add_option("--arch-mlp-top", a->mlp_top, "Top MLP widths without the input, e.g. 512-256-1");
  c->add_option("--emb-init-scale", a->emb_init,
                "Embedding rows start U(-s, s) (default 0.01 for every table, whatever its size)")
      ->check(PositiveReal());
  c->add_option("--emb-dtype", a->emb_dtype,
                "Embedding tables in fp32, fp16 or bf16 (half the memory; GPU fused step, float32 arithmetic, "
                "stochastic rounding)")
      ->capture_default_str();
  c->add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--batch-size,--mini-batch-size", o.batch_size, "Training batch size")->capture_default_str()
      ->check(PositiveInt<int64_t>());
  c->add_option("--test-batch-size", o.test_batch_size, "Evaluation batch size (default 16384)")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--optimizer", a->optimizer,
                "adagrad (row-wise state for the embeddings, element-wise for the MLPs) or sgd")
      ->capture_default_str()->check(CLI::IsMember({"adagrad", "sgd"}));
  c->add_option("--lr,--learning-rate", a->lr,
                "Learning rate (default: the recipe's for the optimizer and batch size, docs/trainer.md)")
      ->check(PositiveReal());
  c->add_option("--lr-num-warmup-steps", a->warmup, "Linear warm-up steps (default: the recipe's)")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--lr-decay-start-step", o.lr.decay_start_step, "Step at which the polynomial decay starts")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--lr-num-decay-steps", o.lr.num_decay_steps, "Steps of the polynomial (power 2) decay")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--epochs,--nepochs", o.epochs, "Passes over the training split")->capture_default_str()
      ->check(NonNegativeInt<int>());
  c->add_option("--max-steps", o.max_steps, "Stop after this many optimiser steps in total (-1: no limit)")
      ->check(IntRange<int64_t>(-1, std::numeric_limits<int64_t>::max(), "-1 (no limit) or a non-negative integer"));
  c->add_option("--test-freq", o.test_freq, "Evaluate on the test split every N steps (0: at the end only)")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--seed", o.seed, "Seed of the initialisation")->capture_default_str()
      ->check(NonNegativeInt<uint64_t>());
  c->add_option("--threads", o.threads, "libtorch threads (0: its default)")->check(NonNegativeInt<int>());
  c->add_option("--engine", o.engine,
                "Raw data: the engine that preprocesses it: auto (cuda when a GPU is usable), cpu or cuda; with "
                "cuda and --device cuda the batches are made in GPU memory")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda", "fpga"}));
  c->add_option("--data-threads", o.data_threads, "Preprocessing threads of the data stream (0: all cores)")
      ->check(NonNegativeInt<int>());
  c->add_option("--precision", a->precision, "auto (tf32 on a GPU, else fp32), fp32, tf32 or bf16")
      ->capture_default_str()->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16"}));
  c->add_option("--step", o.step,
                "The training step: auto (fused GPU kernels on a GPU, else libtorch autograd), fused or autograd")
      ->capture_default_str()->check(CLI::IsMember({"auto", "fused", "autograd"}));
  c->add_flag("--no-cuda-graph", a->no_graph, "GPU runs: do not capture the fused step as a CUDA graph");
  c->add_flag("--deterministic", o.deterministic,
              "Bitwise-reproducible training (on a GPU: the fused step, which uses no float atomics)");
  c->add_option("--checkpoint", o.checkpoint_dir, "Checkpoint directory (written at the end, every --checkpoint-every steps and on "
                "SIGINT/SIGTERM; one already there needs --resume, --auto-resume or --restart)");
  c->add_flag("--resume", o.resume, "Continue from the checkpoint in --checkpoint DIR");
  c->add_flag("--auto-resume", o.auto_resume,
              "Continue from the checkpoint in --checkpoint DIR when there is one, else start afresh");
  c->add_flag("--restart", o.restart, "Start over, replacing the checkpoint in --checkpoint DIR");
  c->add_option("--checkpoint-every", o.checkpoint_every, "Also write a checkpoint every N steps")
      ->check(NonNegativeInt<int64_t>());
  c->add_option("--metrics", o.metrics_path, "Write metrics as JSON lines to FILE");
  c->add_option("--progress-every", a->progress_every,
                "When stderr is not a terminal: a progress line every N seconds (0: none)")
      ->capture_default_str()->check(NonNegativeInt<int>());
  c->add_option("--print-freq", o.print_freq, "Read the training loss back every N steps")->capture_default_str()
      ->check(PositiveInt<int64_t>());
  c->add_option("--max-ind-range", o.max_ind_range, "Cap every embedding table at N rows (ids modulo N)")
      ->check(NonNegativeInt<uint64_t>());
  c->add_option("--online-ids", o.online_ids, "Raw data: first-seen (default), modulo or vocab");
  c->add_option("--vocab-dir", o.vocab_dir, "Raw data with --online-ids vocab: a `sluice prep` output");
  c->add_option("--ring-depth", o.ring_depth, "Batches prepared ahead of the trainer")->capture_default_str()
      ->check(PositiveInt<int>());
  c->add_option("--trace", o.trace_path,
                "Write a Chrome trace (chrome://tracing, ui.perfetto.dev) of --trace-steps steps: every GPU kernel and "
                "copy on every stream, the data pipeline's included; scripts/trace_summary.py sums it up");
  c->add_option("--trace-first", o.trace_first, "The first step traced (counted from this run's first step)")
      ->capture_default_str()->check(NonNegativeInt<int64_t>());
  c->add_option("--trace-steps", o.trace_steps, "Steps traced")->capture_default_str()->check(PositiveInt<int64_t>());
  c->add_flag("--no-pinned", a->no_pinned, "GPU runs: keep the batch ring in pageable host memory (default: page-locked)");
  c->add_flag("--no-eval", a->no_eval, "Skip the final evaluation");
  c->add_flag("--bench-synthetic", a->bench,
              "Benchmark training alone: batches resident on the device, no data pipeline (random ones, or with "
              "--data the first --bench-batches batches of the data)");
  c->add_option("--table-sizes", a->table_sizes, "Benchmark tables: kaggle, terabyte (Criteo Terabyte at --max-ind-range 40000000), N or 26 comma-separated sizes")
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
