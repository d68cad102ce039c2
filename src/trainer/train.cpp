// The training loop: batches from a BatchStream, evaluation, checkpoints, metrics and progress.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sluice/interrupt.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/metrics.hpp"
#include "trainer/batches.hpp"
#include "trainer/checkpoint.hpp"
#include "trainer/dist.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/evaluate.hpp"
#include "trainer/messages.hpp"
#include "trainer/optimizer.hpp"
#include "trainer/progress.hpp"
#include "trainer/sharded.hpp"
#include "trainer/step.hpp"
#include "trainer/trace.hpp"

#include <ATen/record_function.h>
#include "util/fs_ops.hpp"
#include "util/notice.hpp"

namespace sluice::train {

using namespace detail;

namespace {

constexpr const char* kCheckpointFile = "checkpoint.sluice";

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

// Training on several ranks: what the sharded step supports.
void validate_dist_options(const TrainOptions& o, const dist::Env& env) {
  std::string why;
  if (!dist::available(&why)) throw Error("training on " + std::to_string(env.world) + " ranks: " + why);
  const std::string ranks = std::to_string(env.world) + " ranks";
  if (o.step == "fused") throw Error("--step fused: training on " + ranks + " runs the autograd step (sharded tables)");
  if (o.arch.emb_dtype != EmbDtype::kFp32)
    throw Error(std::string("--emb-dtype ") + emb_dtype_name(o.arch.emb_dtype) + ": training on " + ranks +
                " keeps float32 tables (half-precision tables need the fused step, which runs on one GPU)");
  if (o.deterministic && o.device.rfind("cuda", 0) == 0)
    throw Error("--deterministic on GPUs needs the fused step, which runs on one GPU (training on " + ranks + ")");
}

// The checkpoint file of this run: one file, or one per rank ("checkpoint.rank-R-of-N.sluice") holding
// the MLPs, the rank's tables and their optimiser state.
std::string checkpoint_name(const dist::Env& env) {
  if (!env.active()) return kCheckpointFile;
  return "checkpoint.rank-" + std::to_string(env.rank) + "-of-" + std::to_string(env.world) + ".sluice";
}

// A checkpoint in dir written by a run of another number of ranks ("" when there is none).
std::string other_layout_checkpoint(const std::string& dir, const std::string& ours) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const bool ckpt = n == kCheckpointFile || (n.rfind("checkpoint.rank-", 0) == 0 && n.size() > 7 &&
                                               n.compare(n.size() - 7, 7, ".sluice") == 0);
    if (!ckpt || n == ours) continue;
    if (n != kCheckpointFile && ours != kCheckpointFile) {
      // Same layout when only the rank differs: "-of-N.sluice" equal.
      const auto tail = [](const std::string& x) { return x.substr(x.rfind("-of-")); };
      if (tail(n) == tail(ours)) continue;
    }
    return n;
  }
  return "";
}

// The text of an exception for a message: libtorch's without its backtrace.
std::string exception_text(const std::exception& e) {
  if (const auto* t = dynamic_cast<const c10::Error*>(&e)) return torch_message(*t);
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "out of memory";
  return e.what();
}

TrainResult train_impl(const TrainOptions& o, const StreamFactory& streams) {
  validate_options(o);
  const dist::Env env = dist::env_from_environment();
  if (env.active()) validate_dist_options(o, env);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);
  if (device.is_cpu()) reserve_blas_buffers();

  // Several ranks: the process groups (every rank waits here for the others).
  std::unique_ptr<dist::Group> group;
  if (env.active()) group = std::make_unique<dist::Group>(env, device);
  // Stops agreed by every rank (each polls its own signal), so that all stop after the same step.
  auto should_stop = [&]() -> bool {
    const bool mine = o.stop && o.stop();
    return group ? group->any(mine) : mine;
  };
  TrainOptions ro = o;  // what evaluation and the streams see
  if (group) ro.stop = should_stop;

  TrainResult res;
  res.ranks = env.world;
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
    ckpt_path = dir + "/" + checkpoint_name(env);
    const std::string other = other_layout_checkpoint(dir, checkpoint_name(env));
    if (!other.empty() && !o.restart)
      throw Error("checkpoint " + dir + "/" + other + " was written by a run of another number of ranks (this run has " +
                  std::to_string(env.world) + "); resume it with that number, or start over with --restart");
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
  if (group) {
    // Every rank resumes from the same step, or none does.
    if (resume && header.meta.value("ranks", 1) != env.world)
      throw Error("checkpoint " + ckpt_path + " was written by a run of " + std::to_string(header.meta.value("ranks", 1)) +
                  " ranks; this run has " + std::to_string(env.world));
    const std::vector<int64_t> steps = group->allgather_int(resume ? pos.step : -1);
    for (size_t p = 0; p < steps.size(); ++p)
      if (steps[p] != steps[0])
        throw Error("the ranks' checkpoints disagree: rank 0 " +
                    (steps[0] < 0 ? std::string("has none") : "is at step " + std::to_string(steps[0])) + ", rank " +
                    std::to_string(p) + (steps[p] < 0 ? std::string(" has none") : " is at step " + std::to_string(steps[p])) +
                    " (a run stopped while writing them: start over with --restart)");
  }
  const uint64_t seed = resume ? header.meta.value("seed", o.seed) : o.seed;
  const int64_t start_step = pos.step;

  check_emb_dtype_usable(o.arch.emb_dtype, o.device, o.precision, group ? std::string("autograd") : o.step);
  std::vector<int> owner;  // several ranks: each table's rank (or row-wise)
  std::vector<RowRange> held;
  Arch mine = o.arch;      // the rows this rank holds
  if (group) {
    owner = dist::assign_tables(o.arch.table_sizes, env.world, o.row_wise_above);
    held = Sharded::held(owner, o.arch.table_sizes, env.world, env.rank);
    for (size_t t = 0; t < mine.table_sizes.size(); ++t) mine.table_sizes[t] = held[t].rows;
  }
  check_model_fits(mine, o.optimizer, device);
  Dlrm model(o.arch, seed, device, o.precision, held);
  std::unique_ptr<Sharded> sharded;
  if (group) sharded = std::make_unique<Sharded>(model, *group, owner);
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

  std::string step_kind = group ? std::string("autograd") : o.step;
  if (o.deterministic && device.is_cuda() && !group) {
    // The autograd step's table updates use float atomics on a GPU: only the fused step is bitwise
    // reproducible there.
    std::string why;
    if (o.step == "autograd") throw Error("--deterministic on a GPU needs the fused step (not --step autograd)");
    if (!fused_step_available(model, &why)) throw Error("--deterministic on a GPU needs the fused step: " + why);
    step_kind = "fused";
  }
  const std::unique_ptr<TrainStep> step = make_train_step(model, opt, step_kind, o.cuda_graph, seed);
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
    meta["ranks"] = env.world;
    meta["rank"] = env.rank;
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
  double stage_seconds = 0, enqueue_seconds = 0, device_wait_seconds = 0;  // the training thread's time, split
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
    const Evaluation ev = evaluate(model, streams, ro, sharded.get());
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

  StepTracer tracer(o.trace_path, o.trace_first, o.trace_steps);
  int64_t steps_this_run = 0;
  double steady_from_s = -1;  // training time when the steady part of the run began
  int64_t steady_from_rows = 0;
  while (!hit_max && !stopped && !ckpt_failed && pos.epoch < o.epochs) {
    std::unique_ptr<BatchStream> stream;
    try {
      stream = open_stream(streams, Split::kTrain, static_cast<uint64_t>(pos.rows_in_epoch), o.batch_size, ro);
      streamed_train = true;
    } catch (const Interrupted&) {
      stopped = true;
      break;
    }
    if (steps_this_run == 0 && device.is_cuda() && !group) {
      // The step's one-time set-up runs while the stream makes its first batch.
      RECORD_USER_SCOPE("sluice: warm-up");
      oom_guard(step_what, [&] {
        step->warm_up(o.batch_size, model.id_type());
        return 0;
      });
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
        if (should_stop()) {
          stopped = true;
          epoch_done = false;
          break;
        }
        if (steps_this_run == kSteadyAfterSteps) {
          sync_device(device);  // once: the steady part starts with an empty device queue
          steady_from_s = train_seconds + seconds_between(seg, Clock::now());
          steady_from_rows = rows_run;
        }
        tracer.before_step(steps_this_run++);
        Lease lease;
        try {
          RECORD_USER_SCOPE("sluice: next batch");
          lease = next_batch(*stream, o.batch_size);
        } catch (const Interrupted&) {  // the data pipeline saw the signal first
          stopped = true;
          epoch_done = false;
          break;
        }
        if (!lease) break;
        const int64_t rows = lease.view().rows;
        const double lr = lr_at(o.lr, pos.step);
        const auto t_stage = Clock::now();
        Clock::time_point t_run;
        const torch::Tensor loss = oom_guard(step_what, [&] {
          RECORD_USER_SCOPE("sluice: stage and step");
          if (sharded) {
            // This rank's share of the global batch.
            const std::vector<int64_t> shares = dist::split_rows(rows, env.world);
            int64_t first = 0;
            for (int p = 0; p < env.rank; ++p) first += shares[static_cast<size_t>(p)];
            const int64_t mine = shares[static_cast<size_t>(env.rank)];
            const Staged b = mine > 0 ? stage(slice_rows(lease.view(), first, mine), model, o) : empty_staged(model);
            t_run = Clock::now();
            return sharded->train_step(opt, b.dense, b.flat_ids, b.labels, shares, lr);
          }
          const Staged b = stage(lease.view(), model, o);
          t_run = Clock::now();
          return step->run(b.dense, b.flat_ids, b.labels, lr, pos.step);
        });
        const auto t_retire = Clock::now();
        {
          RECORD_USER_SCOPE("sluice: retire batch");
          keeper.retire(std::move(lease));
        }
        stage_seconds += seconds_between(t_stage, t_run);
        enqueue_seconds += seconds_between(t_run, t_retire);
        device_wait_seconds += seconds_between(t_retire, Clock::now());
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
          bool ok = save();
          if (group && group->any(!ok) && ok) {
            ok = false;
            res.checkpoint_error = "another rank could not write its checkpoint at step " + std::to_string(pos.step) +
                                   " (its message says why); this rank's is written";
          }
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
  tracer.finish();
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
          streams, Split::kTrain, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), o.batch_size, ro);
      while (Lease lease = next_batch(*all, o.batch_size)) {
        if (should_stop()) {
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
  if (steady_from_s >= 0 && train_seconds > steady_from_s && rows_run > steady_from_rows)
    res.steady_samples_per_s = static_cast<double>(rows_run - steady_from_rows) / (train_seconds - steady_from_s);
  res.rows_trained = pos.rows_trained;
  res.rows_this_run = rows_run;
  res.steps = pos.step;
  res.step = group ? "autograd, tables sharded over " + std::to_string(env.world) + " ranks"
                   : std::string(step->name());  // "fused+graph" once the step was captured
  res.epochs_completed = pos.epoch;
  res.train_loss = last_loss;
  res.train_seconds = train_seconds;
  res.eval_seconds = eval_seconds;
  res.data_wait_seconds = wait_seconds;
  res.host_stage_seconds = stage_seconds;
  res.host_step_seconds = enqueue_seconds;
  res.device_wait_seconds = device_wait_seconds;
  res.data_wait_fraction = train_seconds > 0 ? wait_seconds / train_seconds : 0;
  res.stopped = stopped;
  nlohmann::json summary = res.to_json();
  summary["type"] = "summary";
  metrics.write(summary);
  return res;
}

}  // namespace

TrainResult train(const TrainOptions& options, const StreamFactory& streams) {
  TrainOptions o = options;
  apply_rank_environment(o);
  if (o.lr.base_lr <= 0) o.lr.base_lr = default_lr(o.optimizer, o.batch_size);
  if (o.lr.num_warmup_steps < 0) o.lr.num_warmup_steps = default_warmup_steps(o.optimizer, o.batch_size);
  try {
    return train_impl(o, streams);
  } catch (const c10::Error& e) {
    // Any libtorch error that got this far: its message, without libtorch's backtrace.
    throw Error(torch_message(e));
  }
}

}  // namespace sluice::train
