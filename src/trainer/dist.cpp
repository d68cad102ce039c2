// Process groups, the launch environment and the sharding plan.
#include "trainer/dist.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <numeric>

#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/messages.hpp"

#if defined(SLUICE_DIST_GLOO)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if defined(SLUICE_DIST_GLOO) && defined(SLUICE_DIST_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace sluice::train::dist {

namespace {

const char* env_text(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// The first line of an exception's text (libtorch's carry a backtrace after it).
std::string first_line(const char* text) {
  std::string s(text);
  const size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

int env_int(const char* name, const char* value, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
    throw Error(std::string("environment variable ") + name + "='" + value + "' is not an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(v);
}

}  // namespace

Env env_from_environment() {
  Env e;
  const char* ws = env_text("WORLD_SIZE");
  if (!ws) return e;
  e.world = env_int("WORLD_SIZE", ws, 1, 1 << 16);
  const char* rank = env_text("RANK");
  if (e.world == 1) {
    if (rank && env_int("RANK", rank, 0, 0) != 0) throw Error("RANK must be 0 when WORLD_SIZE is 1");
    return e;
  }
  if (!rank) throw Error("WORLD_SIZE=" + std::to_string(e.world) + " is set but RANK is not (launch with torchrun or sluice train --nproc)");
  e.rank = env_int("RANK", rank, 0, e.world - 1);
  const char* local = env_text("LOCAL_RANK");
  e.local_rank = local ? env_int("LOCAL_RANK", local, 0, e.world - 1) : e.rank;
  const char* addr = env_text("MASTER_ADDR");
  const char* port = env_text("MASTER_PORT");
  if (!addr || !port) throw Error("a run of " + std::to_string(e.world) + " ranks needs MASTER_ADDR and MASTER_PORT");
  e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", port, 1, 65535);
  return e;
}

}  // namespace sluice::train::dist

namespace sluice::train {

void apply_rank_environment(TrainOptions& o) {
  const dist::Env env = dist::env_from_environment();
  if (!env.active()) return;
  if (o.device == "cuda") o.device = "cuda:" + std::to_string(env.local_rank);
  if (env.rank != 0) {
    o.metrics_path.clear();
    o.progress = false;
    o.progress_every = 0;
  }
}

}  // namespace sluice::train

namespace sluice::train::dist {

bool available(std::string* why) {
#if defined(SLUICE_DIST_GLOO)
  (void)why;
  return true;
#else
  if (why) *why = "this build has no process groups (libtorch's c10d headers and Gloo's headers were not found at build time)";
  return false;
#endif
}

std::vector<int> assign_tables(const std::vector<int64_t>& sizes, int world, int64_t row_wise_above) {
  std::vector<int> owner(sizes.size(), 0);
  if (world <= 1) return owner;
  int64_t limit = row_wise_above;
  if (limit == 0) limit = std::accumulate(sizes.begin(), sizes.end(), int64_t{0}) / world;
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<int64_t> load(static_cast<size_t>(world), 0);
  std::vector<int> count(static_cast<size_t>(world), 0);
  for (size_t t : order) {
    if (limit >= 0 && sizes[t] > limit) {
      owner[t] = kRowWise;
      continue;
    }
    int best = 0;
    for (int r = 1; r < world; ++r) {
      const auto rr = static_cast<size_t>(r), bb = static_cast<size_t>(best);
      // Fewest rows; among equals, fewest tables (small tables still spread), then the lower rank.
      if (load[rr] < load[bb] || (load[rr] == load[bb] && count[rr] < count[bb])) best = r;
    }
    owner[t] = best;
    load[static_cast<size_t>(best)] += sizes[t];
    ++count[static_cast<size_t>(best)];
  }
  return owner;
}

std::vector<int64_t> split_rows(int64_t rows, int world) {
  std::vector<int64_t> s(static_cast<size_t>(world), rows / world);
  for (int64_t p = 0; p < rows % world; ++p) ++s[static_cast<size_t>(p)];
  return s;
}

#if defined(SLUICE_DIST_GLOO)

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> data;  // NCCL (GPU) or Gloo (CPU)
  c10::intrusive_ptr<c10d::Backend> ctrl;  // Gloo, host tensors
};

Group::Group(const Env& env, const torch::Device& device)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), world_(env.world), device_(device) {
  const std::string where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world;
    so.waitWorkers = true;
    so.timeout = std::chrono::seconds(300);
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw Error(where + ": could not meet the other ranks at " + env.master_addr + ":" +
                std::to_string(env.master_port) + " (" + first_line(e.what()) + ")");
  }
  const bool loopback = env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0;
  auto gloo = [&](const std::string& prefix) {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->devices.push_back(loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
    return c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>(prefix, impl_->store), env.rank, env.world, opts);
  };
  try {
    impl_->ctrl = gloo("ctrl");
    if (device.is_cuda()) {
#if defined(SLUICE_DIST_NCCL)
      c10::cuda::set_device(device.index());
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      impl_->data = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("data", impl_->store), env.rank, env.world, opts);
#else
      throw Error("this build has no NCCL process group (nccl.h was not found at build time): train on several "
                  "GPUs with a build that has it, or use --device cpu");
#endif
    } else {
      impl_->data = gloo("data");
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(where + ": could not open the process groups (" + first_line(e.what()) + ")");
  }
}

Group::~Group() = default;

void Group::allreduce_sum(torch::Tensor& t) {
  std::vector<at::Tensor> v{t};
  impl_->data->allreduce(v)->wait();
}

torch::Tensor Group::alltoall(const torch::Tensor& in, const std::vector<int64_t>& send,
                              const std::vector<int64_t>& recv) {
  const int64_t total = std::accumulate(recv.begin(), recv.end(), int64_t{0});
  torch::Tensor out = torch::empty({total}, in.options());
  torch::Tensor src = in.contiguous();
  std::vector<int64_t> s = send, r = recv;
  impl_->data->alltoall_base(out, src, r, s)->wait();
  return out;
}

torch::Tensor Group::allgather(const torch::Tensor& in) {
  std::vector<at::Tensor> input{in.contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int p = 0; p < world_; ++p) output[0].push_back(torch::empty_like(input[0]));
  impl_->data->allgather(output, input)->wait();
  return torch::cat(output[0]);
}

bool Group::any(bool flag) {
  std::vector<at::Tensor> v{torch::full({1}, flag ? 1 : 0, torch::kInt32)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  impl_->ctrl->allreduce(v, o)->wait();
  return v[0].item<int32_t>() != 0;
}

std::vector<int64_t> Group::allgather_int(int64_t value) {
  std::vector<at::Tensor> input{torch::full({1}, value, torch::kInt64)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int p = 0; p < world_; ++p) output[0].push_back(torch::empty({1}, torch::kInt64));
  impl_->ctrl->allgather(output, input)->wait();
  std::vector<int64_t> r;
  for (auto& t : output[0]) r.push_back(t.item<int64_t>());
  return r;
}

void Group::barrier() { impl_->ctrl->barrier()->wait(); }

#else  // no process groups in this build

struct Group::Impl {};

Group::Group(const Env& env, const torch::Device& device) : rank_(env.rank), world_(env.world), device_(device) {
  std::string why;
  available(&why);
  throw Error("training on " + std::to_string(env.world) + " ranks: " + why);
}
Group::~Group() = default;
void Group::allreduce_sum(torch::Tensor&) {}
torch::Tensor Group::alltoall(const torch::Tensor& in, const std::vector<int64_t>&, const std::vector<int64_t>&) { return in; }
torch::Tensor Group::allgather(const torch::Tensor& in) { return in; }
bool Group::any(bool flag) { return flag; }
std::vector<int64_t> Group::allgather_int(int64_t v) { return {v}; }
void Group::barrier() {}

#endif

}  // namespace sluice::train::dist
