// The synthetic training-only benchmark: training steps on batches generated on the device.
#include <ATen/CPUGeneratorImpl.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/interrupt.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/batches.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/messages.hpp"
#include "trainer/optimizer.hpp"
#include "trainer/step.hpp"
#include "trainer/trace.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/batch_copy.hpp"
#endif

namespace sluice::train {

using namespace detail;

namespace {

// Memory in use on a GPU (all processes, the caching allocator's reserve included); 0 on the CPU.
double device_used_bytes(const torch::Device& device) {
#if defined(SLUICE_HAVE_CUDA)
  size_t free_b = 0, total_b = 0;
  if (device.is_cuda() && cuda_batch::device_memory(device.index() < 0 ? 0 : device.index(), &free_b, &total_b))
    return static_cast<double>(total_b - free_b);
#endif
  (void)device;
  return 0;
}

nlohmann::json bench_impl(const BenchOptions& o) {
  if (o.batch_size <= 0 || o.steps <= 0 || o.warmup_steps < 0 || o.distinct_batches <= 0)
    throw Error("--batch-size, --steps and the number of batches must be positive");
  validate_arch(o.arch);
  const torch::Device device = resolve_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  apply_precision(o.precision);
  if (device.is_cpu()) reserve_blas_buffers();

  check_emb_dtype_usable(o.arch.emb_dtype, o.device, o.precision, o.step);
  check_model_fits(o.arch, o.optimizer, device);
  const auto t_init = Clock::now();
  Dlrm model(o.arch, o.seed, device, o.precision);
  Optimizer opt(o.optimizer, model);
  sync_device(device);
  const double init_secs = seconds_between(t_init, Clock::now());
  const std::unique_ptr<TrainStep> step = make_train_step(model, opt, o.step, o.cuda_graph, o.seed);

  // Batches resident on the device, made once. Synthetic: dense features in the range of ln(x+1) values,
  // ids uniform in each table, labels with a 25% click rate. From data: the first full batches of the
  // training stream (the data's own id distribution), copied to the device.
  const int64_t bs = o.batch_size;
  int64_t nb = o.distinct_batches;
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
        if (o.data) {
          TrainOptions check;
          check.id_modulo = o.id_modulo;
          const std::unique_ptr<BatchStream> stream = open_stream(o.data, Split::kTrain, 0, bs, check);
          while (static_cast<int64_t>(dense.size()) < nb) {
            Lease lease = next_batch(*stream, bs);
            if (!lease || lease.view().rows < bs) break;
            sync_device(device);  // a batch made on the GPU is complete before it is copied
            const Staged b = stage(lease.view(), model, check);
            dense.push_back(b.dense.clone());
            labels.push_back(b.labels.clone());
            // Back to table-local ids: the timed loop adds the offsets as the synthetic one does.
            sparse.push_back(b.flat_ids.view({bs, kNumSparse}).sub(model.flat_ids(torch::zeros(
                {1, kNumSparse}, b.flat_ids.options())).view({1, kNumSparse})).contiguous());
            sync_device(device);
          }
          if (dense.empty()) throw Error("--bench-synthetic --data: the training split has no full batch of " + std::to_string(bs) + " rows");
          nb = static_cast<int64_t>(dense.size());
          return;
        }
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
  double host_secs = 0;  // the host's time enqueuing steps
  StepTracer tracer(o.trace_path, o.trace_first, o.trace_steps);
  auto run = [&](int64_t steps, int64_t first) {
    oom_guard(
        [&] {
          return "in a training step (a batch of " + std::to_string(bs) + " rows on " + device.str() +
                 "; a smaller --batch-size needs less)";
        },
        [&] {
          for (int64_t s = 0; s < steps; ++s) {
            check_interrupt();  // Ctrl-C ends a long benchmark (exit status 130)
            tracer.before_step(first + s);
            const int64_t i = (first + s) % nb;
            const auto h0 = Clock::now();
            loss = step->run(dense[i], model.flat_ids(sparse[i]), labels[i], o.lr, first + s);
            host_secs += seconds_between(h0, Clock::now());
          }
        });
  };
  run(o.warmup_steps, 0);
  if (loss.defined()) (void)loss.item<double>();
  sync_device(device);
  const auto t0 = Clock::now();
  host_secs = 0;
  run(o.steps, o.warmup_steps);
  const double final_loss = loss.item<double>();
  sync_device(device);
  tracer.finish();
  const double secs = seconds_between(t0, Clock::now());

  int64_t table_rows = 0;
  for (int64_t n : o.arch.table_sizes) table_rows += n;
  return {{"mode", o.data ? "bench-resident-data" : "bench-synthetic"},
          {"distinct_batches", nb},
          {"samples_per_s", static_cast<double>(o.steps * bs) / secs},
          {"step_ms", 1000.0 * secs / static_cast<double>(o.steps)},
          {"host_step_ms", 1000.0 * host_secs / static_cast<double>(o.steps)},
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
          {"emb_dtype", emb_dtype_name(o.arch.emb_dtype)},
          {"model_init_seconds", init_secs},
          {"device_memory_used_bytes", device_used_bytes(device)},
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
