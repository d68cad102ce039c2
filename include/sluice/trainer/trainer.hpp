// sluice train: a DLRM trainer (libtorch) fed by a BatchStream.
//
// This header does not include libtorch: the CLI and other callers only see plain C++ types. The model
// follows Meta's DLRM: bottom MLP, one embedding table per categorical feature (all 26 fused into one
// weight tensor with per-table row offsets), `dot` interaction, top MLP with a sigmoid, mean BCE loss.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/batch.hpp"
#include "sluice/dataset.hpp"

namespace sluice::train {

// ---- architecture -------------------------------------------------------------------------------

// How the embedding tables are stored. Half-precision tables halve their memory (the terabyte and mlperf
// presets' 96 GB of float32 fit an 80 GB GPU as 48 GB); the fused GPU step reads them into float32,
// computes every sum and update in float32 and rounds stochastically when it stores (so small updates
// are not lost). They need the fused GPU step.
enum class EmbDtype : uint8_t { kFp32, kFp16, kBf16 };
EmbDtype parse_emb_dtype(const std::string& name);  // "fp32" | "fp16" | "bf16"
const char* emb_dtype_name(EmbDtype t);             // "fp32", "fp16", "bf16"

struct Arch {
  int64_t emb_dim = 16;               // d, the embedding width (--arch-sparse-feature-size)
  std::vector<int64_t> bot_mlp;       // full layer widths, 13 first, d last ("13-512-256-64-16")
  std::vector<int64_t> top_mlp;       // full layer widths, the interaction width first, 1 last
  std::vector<int64_t> table_sizes;   // 26 embedding-table row counts
  // Embedding rows start U(-s, s), the same s for every table: a table's initial rows then do not depend
  // on its size (online ids size tables by a capacity, prepared data by the vocabulary). s <= 0: Meta's
  // sqrt(1 / table rows).
  double emb_init_scale = 0.01;
  EmbDtype emb_dtype = EmbDtype::kFp32;  // --emb-dtype
};

// The three presets: "kaggle", "terabyte", "mlperf" (throws sluice::Error for any other name).
// table_sizes is left empty: it comes from the data.
Arch preset_arch(const std::string& name);

// "13-512-256-64-16" -> {13, 512, 256, 64, 16} (throws sluice::Error when malformed).
std::vector<int64_t> parse_mlp(const std::string& text);

// Width of the interaction output: d + 27*26/2 for the dot interaction of 27 vectors.
int64_t interaction_width(int64_t emb_dim);

// Applies Meta-style overrides and checks the whole: the bottom MLP must start at 13 and end at d; the
// top MLP's input width is derived (a given "512-256-1" gets the input prepended; a given list whose first
// entry already equals the interaction width is taken as is) and it must end at 1.
// bot_override / top_override may be empty (keep the preset's); emb_dim_override <= 0 keeps the preset's.
void apply_arch_overrides(Arch& arch, int64_t emb_dim_override, const std::string& bot_override,
                          const std::string& top_override);
void validate_arch(const Arch& arch);  // throws sluice::Error with a message naming the problem

// Embedding-table size lists: "kaggle" (Criteo Kaggle cardinalities), "terabyte" (the Criteo Terabyte
// table sizes Meta's DLRM and MLPerf train with at --max-ind-range 40000000: 188 M rows), "N" (26 tables
// of N rows) or a comma-separated list of 26 sizes; max_ind_range > 0 caps every table at that size.
std::vector<int64_t> parse_table_sizes(const std::string& text, uint64_t max_ind_range = 0);

// ---- optimisation -------------------------------------------------------------------------------

enum class OptimizerKind : uint8_t { kSgd, kAdagrad };
enum class Precision : uint8_t { kFp32, kTf32, kBf16 };

OptimizerKind parse_optimizer(const std::string& name);  // "sgd" | "adagrad"
Precision parse_precision(const std::string& name);      // "fp32" | "tf32" | "bf16"
const char* optimizer_name(OptimizerKind k);
const char* precision_name(Precision p);

// Meta's LRPolicyScheduler: linear warm-up, then a polynomial decay of power 2.
struct LrSchedule {
  double base_lr = 0;  // <= 0 (training options): default_lr(optimizer, batch size)
  int64_t num_warmup_steps = 0;    // < 0 (training options): default_warmup_steps(optimizer, batch size)
  int64_t decay_start_step = 0;
  int64_t num_decay_steps = 0;
};
// The learning rate used by the optimiser step that follows `steps_done` completed steps (0 for the very
// first step). Matches Meta's scheduler, whose internal step count is steps_done + 1.
double lr_at(const LrSchedule& s, int64_t steps_done);

// The default recipe (docs/trainer.md has the evidence): row-wise Adagrad for the embeddings and
// Adagrad for the MLPs at 0.01 whatever the batch size, no warm-up (one over the first 2^18 samples
// changed nothing). SGD keeps Meta's 0.1.
double default_lr(OptimizerKind optimizer, int64_t batch_size);
int64_t default_warmup_steps(OptimizerKind optimizer, int64_t batch_size);
void validate_schedule(const LrSchedule& s);  // throws sluice::Error (e.g. decay start inside warm-up)

// ---- training -----------------------------------------------------------------------------------

struct TrainOptions {
  Arch arch;                          // table_sizes filled from the data (train_dataset does it)
  std::string device = "cpu";         // "cpu", "cuda" or "cuda:N"
  int64_t batch_size = 2048;
  int64_t test_batch_size = 0;        // 0 = 16384
  LrSchedule lr;                      // base_lr <= 0: default_lr(optimizer, batch_size)
  OptimizerKind optimizer = OptimizerKind::kAdagrad;
  int epochs = 1;
  int64_t max_steps = -1;             // stop after this many optimiser steps in total (-1 = no limit)
  int64_t test_freq = 0;              // evaluate on the test split every N steps (0 = only at the end)
  uint64_t seed = 123;
  int threads = 0;                    // torch intra-op threads (0 = leave libtorch's default)
  int data_threads = 0;               // preprocessing threads of the batch stream (0 = all cores)
  Precision precision = Precision::kFp32;
  // The step: "auto" (the fused GPU step where it applies, else libtorch's autograd), "fused", "autograd";
  // cuda_graph: the fused step is captured as a CUDA graph and replayed.
  std::string step = "auto";
  bool cuda_graph = true;
  // Bitwise-reproducible training: on a GPU the fused step is required (it uses no float atomics; an
  // error where it does not apply); the CPU step is deterministic already. Resumed runs then end
  // bitwise equal to uninterrupted ones on the GPU too.
  bool deterministic = false;
  // Checkpoints. A checkpoint already in checkpoint_dir is never replaced by accident: without one of
  // resume, auto_resume or restart, train() refuses to start (the message names its step and rows).
  std::string checkpoint_dir;         // empty = no checkpoints
  bool resume = false;                // continue from checkpoint_dir's checkpoint (an error when there is none)
  bool auto_resume = false;           // continue when checkpoint_dir holds a checkpoint, else start fresh
  bool restart = false;               // start over; the first checkpoint written replaces the old one
  int64_t checkpoint_every = 0;       // also write a checkpoint every N steps (0 = only at the end/stop)
  std::string metrics_path;           // JSON lines (empty = none)
  int64_t print_freq = 100;           // read the training loss back every N steps (metrics file)
  bool progress = false;              // progress bar on stderr (redrawn at most every 0.25 s)
  double progress_every = 0;          // > 0: a plain progress line on stderr every this many seconds
  bool evaluate = true;               // evaluate the test split at the end
  int ring_depth = 4;                 // batches the stream prepares ahead
  bool pinned_memory = true;          // GPU runs: page-locked host memory for the batch ring
  uint64_t id_modulo = 0;             // > 0: ids are taken modulo this on the fly (prepared + --max-ind-range)
  bool check_ids = true;              // host batches: check every id against its table size
  // Polled once per step and per evaluation batch (e.g. sluice::pending_interrupt() != 0): when it
  // returns true the trainer finishes the step, writes its checkpoint and returns with `stopped` set.
  std::function<bool()> stop;
  int64_t train_rows_hint = -1;       // rows in the train split, for progress and ETA (-1 = unknown)
  // A Chrome trace of this run's steps [trace_first, trace_first + trace_steps) (every GPU kernel and copy
  // of the process, the training loop's phases); empty = none.
  std::string trace_path;
  int64_t trace_first = 30;
  int64_t trace_steps = 20;
  // Several ranks: tables of more rows than this are split row-wise over every rank, the others placed
  // whole (0: tables of more rows than an even share of all tables' rows; negative: none).
  int64_t row_wise_above = 0;

  // Dataset options (train_dataset only).
  std::string data_dir;
  uint64_t max_ind_range = 0;
  std::string online_ids;             // raw data: "first-seen" | "modulo" | "vocab" ("" = first-seen)
  std::string vocab_dir;
  std::string engine = "auto";        // raw data: the engine that preprocesses it ("auto": cuda when a
                                      // GPU is usable); cuda + a cuda device: batches made in GPU memory
};

// Steps of a run after which TrainResult::steady_samples_per_s starts counting.
constexpr int64_t kSteadyAfterSteps = 20;

struct TrainResult {
  double test_auc = 0, test_logloss = 0, test_accuracy = 0;
  int64_t test_rows = 0;
  double train_samples_per_s = 0;
  // The rate after this run's first kSteadyAfterSteps steps (the step's one-time set-up, library
  // loading and CUDA graph capture excluded, as --bench-synthetic's warm-up steps are); 0 for a run
  // with fewer steps.
  double steady_samples_per_s = 0;
  int64_t rows_trained = 0;           // rows the model has been trained on in total (over resumes)
  int64_t rows_this_run = 0;          // rows trained by this invocation
  int64_t steps = 0;                  // optimiser steps in total
  int epochs_completed = 0;
  double train_loss = 0;              // mean loss of the last print interval
  double train_seconds = 0;           // wall time of the training loop (excluding evaluation, checkpoints)
  double eval_seconds = 0;
  double data_wait_seconds = 0;       // time next() blocked on the training streams
  double data_wait_fraction = 0;      // data_wait_seconds / train_seconds
  // The training thread's own time per step, summed: staging a batch (id check, copies to the device:
  // host_stage_seconds), enqueuing its step (host_step_seconds), and waiting for the device to finish
  // older steps so that their batches can be released (device_wait_seconds). With data_wait_seconds
  // they tell a host-bound loop (little device wait) from a device-bound one.
  double host_stage_seconds = 0;
  double host_step_seconds = 0;
  double device_wait_seconds = 0;
  int ranks = 1;                      // processes that trained the model together
  std::string device;
  std::string precision;
  std::string optimizer;
  std::string step;                   // the training step that ran: autograd, fused or fused+graph
  std::string checkpoint;             // path of the last checkpoint written by this run ("" = none)
  // Why a checkpoint could not be written ("" = no failure): the message names the file, the error,
  // and whether the previous checkpoint is intact. Training stops at a failed checkpoint; the result
  // is still complete (a failed final checkpoint still leaves the evaluation to run).
  std::string checkpoint_error;
  bool resumed = false;               // continued from a checkpoint
  bool stopped = false;               // stopped early by TrainOptions::stop (or an interrupted data stream)
  nlohmann::json to_json() const;
};

// Opens a stream over one split of the training data, skipping `start_row` rows of it.
using StreamFactory =
    std::function<std::unique_ptr<BatchStream>(Split split, uint64_t start_row, int64_t batch_size)>;

// Trains opts.arch (with table_sizes set) on the batches the factory hands out; evaluates the test split
// at the end (and every test_freq steps). Throws sluice::Error on bad input (CUDA without a GPU, a corrupt
// checkpoint or one written for other table sizes, an existing checkpoint without resume/auto_resume/
// restart, ids out of range, ...) and when memory runs out (the message names what was being allocated
// and how much). A checkpoint that cannot be written is reported in TrainResult::checkpoint_error.
TrainResult train(const TrainOptions& opts, const StreamFactory& streams);

// Trains on a dataset directory (a `sluice prep` output or a folder of raw day files).
TrainResult train_dataset(TrainOptions opts);

// Training on several ranks, launched as torchrun launches them (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT; `sluice train --nproc N` sets them): --batch-size is the global batch, split
// into consecutive shares; the MLPs are data-parallel, the tables sharded table-wise. This applies the
// environment to the options: --device cuda becomes the rank's GPU (cuda:LOCAL_RANK); ranks other than 0
// write no metrics file and show no progress. Nothing changes for a single process. train() and
// train_dataset() call it.
void apply_rank_environment(TrainOptions& opts);

// Page-locked host memory for the batch ring when training on a GPU (host-to-device copies are then
// asynchronous and run at full link speed); empty functions for the CPU.
struct HostAllocator {
  std::function<void*(size_t)> alloc;
  std::function<void(void*)> free;
};
HostAllocator pinned_host_allocator(const std::string& device);

// ---- benchmark ----------------------------------------------------------------------------------

struct BenchOptions {
  Arch arch;                          // table_sizes set
  std::string device = "cpu";
  int64_t batch_size = 2048;
  int64_t steps = 200;                // timed steps
  int64_t warmup_steps = 20;
  int64_t distinct_batches = 16;      // batches pregenerated on the device and cycled through
  double lr = 0.01;
  OptimizerKind optimizer = OptimizerKind::kAdagrad;
  Precision precision = Precision::kFp32;
  std::string step = "auto";
  bool cuda_graph = true;
  uint64_t seed = 123;
  int threads = 0;
  // Set: the batches are the first distinct_batches full batches of this factory's training stream (a
  // dataset's own ids, copied to the device once) instead of random ones; id_modulo as TrainOptions'.
  StreamFactory data;
  uint64_t id_modulo = 0;
  std::string trace_path;             // as TrainOptions' (steps counted from the first warm-up step)
  int64_t trace_first = 30;
  int64_t trace_steps = 20;
};

// Training-only throughput: batches resident on the device (random ids in range, or a dataset's), no
// data pipeline. Returns a JSON object with samples_per_s and the configuration.
nlohmann::json bench_synthetic(const BenchOptions& opts);

// bench_synthetic on the first batches of a dataset directory (`sluice train --bench-synthetic --data
// DIR`): the table sizes and the batches come from the data, opened as train_dataset() opens it (data's
// dataset fields: data_dir, max_ind_range, online_ids, vocab_dir, engine, device, data_threads).
nlohmann::json bench_dataset(BenchOptions opts, const TrainOptions& data);

}  // namespace sluice::train
