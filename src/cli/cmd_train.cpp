// `sluice train` (DLRM training, libtorch) and `sluice plot` (metrics curves through matplotlib).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
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
  int nproc = 1;        // ranks started on this machine
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

// ---- several ranks on this machine (--nproc N) -------------------------------------------------

// A TCP port free on the loopback interface now (the rank-0 store listens on it).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("--nproc: cannot open a socket (" + std::string(std::strerror(errno)) + ")");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw Error("--nproc: cannot find a free port on 127.0.0.1");
  return ntohs(addr.sin_port);
}

// This process's command line without --nproc.
std::vector<std::string> arguments_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
  if (args.empty()) throw Error("--nproc: cannot read this process's command line");
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

// The file whose appearance asks the ranks of a --nproc run to stop (SLUICE_STOP_FILE, set by the launcher).
bool stop_file_present() {
  static const char* path = std::getenv("SLUICE_STOP_FILE");
  return path && *path && ::access(path, F_OK) == 0;
}

// Starts n ranks of this command (torchrun's environment) in a process group of their own and waits for
// them. A signal to this process does not reach them as a signal (their data pipelines would stop at
// different batches): it creates the stop file, which every rank checks before each step; the ranks
// agree on the step to stop after, write their checkpoints and end. When a rank fails the others are
// stopped (SIGTERM, then SIGKILL after 20 s) and the failure is this command's.
void launch_ranks(int n) {
  if (const char* ws = std::getenv("WORLD_SIZE"); ws && std::atoi(ws) > 1)
    throw Error("--nproc: this process is already a rank of a launched run (WORLD_SIZE=" + std::string(ws) +
                "); use --nproc or a launcher such as torchrun, not both");
  std::vector<std::string> args = arguments_without_nproc();
  std::error_code ec;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) throw Error("--nproc: cannot find this program's path");
  const int port = free_port();
  const std::filesystem::path stop_file = std::filesystem::temp_directory_path() /
      ("sluice-stop-" + std::to_string(::getpid()) + "-" + std::to_string(port));
  std::filesystem::remove(stop_file, ec);
  struct RemoveStopFile {
    std::filesystem::path p;
    ~RemoveStopFile() {
      std::error_code e;
      std::filesystem::remove(p, e);
    }
  } remove_stop_file{stop_file};
  const char* kOwn[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=",
                        "SLUICE_STOP_FILE="};
  std::vector<std::string> base_env;
  for (char** e = environ; *e; ++e) {
    bool own = false;
    for (const char* k : kOwn) own = own || std::strncmp(*e, k, std::strlen(k)) == 0;
    if (!own) base_env.emplace_back(*e);
  }
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  std::vector<pid_t> pids;
  pid_t group = 0;
  auto stop_all = [&](int sig) {
    if (group > 0) ::kill(-group, sig);
  };
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> env = base_env;
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("WORLD_SIZE=" + std::to_string(n));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(n));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    env.push_back("SLUICE_STOP_FILE=" + stop_file.string());
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (r > 0) posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);  // rank 0 reports
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, group);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      stop_all(SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      throw Error("--nproc: cannot start rank " + std::to_string(r) + " (" + std::strerror(rc) + ")");
    }
    if (group == 0) group = pid;
    pids.push_back(pid);
  }

  int left = n, forwarded = 0;
  int failed_rank = -1, failed_code = 0;
  std::string failed_how;
  using Clock = std::chrono::steady_clock;
  Clock::time_point kill_at{};
  while (left > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-group, &status, WNOHANG);
    if (pid > 0) {
      --left;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && failed_rank < 0) {
        for (size_t r = 0; r < pids.size(); ++r)
          if (pids[r] == pid) failed_rank = static_cast<int>(r);
        failed_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        failed_how = WIFEXITED(status) ? "exited with code " + std::to_string(WEXITSTATUS(status))
                                       : std::string("was killed by signal ") + std::to_string(WTERMSIG(status));
        if (left > 0 && forwarded == 0) {
          stop_all(SIGTERM);  // the others would wait for it in their next collective
          kill_at = Clock::now() + std::chrono::seconds(20);
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (const int sig = pending_interrupt(); sig != 0 && forwarded == 0) {
      forwarded = sig;
      std::ofstream(stop_file) << sig << "\n";  // the ranks finish a step, write their checkpoints, end
    }
    if (kill_at != Clock::time_point{} && Clock::now() > kill_at) {
      stop_all(SIGKILL);
      kill_at = {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (forwarded != 0) throw Interrupted(forwarded);
  if (failed_rank >= 0) {
    if (failed_code == 130 || failed_code == 143) throw Interrupted(failed_code - 128);
    throw Error("--nproc " + std::to_string(n) + ": rank " + std::to_string(failed_rank) + " " + failed_how +
                (n > 1 ? "; the other ranks were stopped" : ""));
  }
}

void run_train(const TrainArgs& a) {
  if (a.nproc > 1) {
    if (a.bench) throw Error("--nproc applies to training runs, not to --bench-synthetic");
    launch_ranks(a.nproc);
    return;
  }
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
  o.stop = [] { return pending_interrupt() != 0 || stop_file_present(); };

  const train::TrainResult r = train::train_dataset(o);
  const char* rank = std::getenv("RANK");
  if (!rank || std::atoi(rank) == 0) std::fprintf(stderr, "sluice train: %lld rows in %.1f s (%.0f samples/s, %.1f%% waiting for data)\n",
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
  c->add_option("--nproc", a->nproc,
                "Train on N ranks on this machine: N processes, one per GPU with --device cuda (NCCL), or N CPU "
                "processes (Gloo); --batch-size stays the global batch. Runs over several machines are launched "
                "as torchrun launches them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
      ->capture_default_str()->check(PositiveInt<int>());
  c->add_option("--row-wise-above", o.row_wise_above,
                "Several ranks: split tables of more than N rows row-wise over every rank, place the others whole "
                "(0: tables larger than an even share of all tables' rows; -1: none)")
      ->capture_default_str();
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
