#include "trainer/trace.hpp"

#include <torch/cuda.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "sluice/source.hpp"
#include "util/fs_ops.hpp"
#include "util/notice.hpp"

namespace sluice::train::detail {

namespace {
namespace prof = torch::profiler::impl;

// GPU activity only where a GPU is usable (CUPTI would complain otherwise).
std::set<prof::ActivityType> activities() {
  if (torch::cuda::is_available()) return {prof::ActivityType::CPU, prof::ActivityType::CUDA};
  return {prof::ActivityType::CPU};
}
prof::ProfilerConfig config() { return prof::ProfilerConfig(prof::ProfilerState::KINETO); }
}  // namespace

StepTracer::StepTracer(std::string path, int64_t first_step, int64_t steps)
    : path_(std::move(path)), first_(first_step), steps_(steps) {
  if (path_.empty()) return;
  if (first_ < 0 || steps_ <= 0) throw Error("--trace-steps: the first step must be >= 0 and the count positive");
  torch::autograd::profiler::prepareProfiler(config(), activities());
}

StepTracer::~StepTracer() {
  try {
    finish();
  } catch (...) {
  }
}

void StepTracer::before_step(int64_t step) {
  if (path_.empty() || done_) return;
  if (!active_ && step == first_) {
    torch::autograd::profiler::enableProfiler(config(), activities());
    active_ = true;
  } else if (active_ && step >= first_ + steps_) {
    finish();
  }
}

void StepTracer::finish() {
  if (path_.empty() || done_) return;
  if (!active_) {
    done_ = true;
    notice("no trace written to " + path_ + ": the run ended before step " + std::to_string(first_ + 1));
    return;
  }
  active_ = false;
  done_ = true;
  // Steps enqueued but not yet run would be missing from the trace: let the GPU finish them first.
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> r = torch::autograd::profiler::disableProfiler();
  // The trace goes to a temporary name first: a reader never sees half a file.
  const std::string tmp = fsops::hidden_sibling(path_, "tmp");
  r->save(tmp);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    fsops::remove_tree(tmp);
    throw Error("cannot write the trace " + path_ + ": " + std::strerror(err));
  }
  notice("trace of steps " + std::to_string(first_ + 1) + ".. written to " + path_);
}

}  // namespace sluice::train::detail
