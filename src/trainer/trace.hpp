// A timeline of a few training steps: libtorch's Kineto profiler (CUPTI underneath) records every
// GPU kernel, copy and memset on every stream of the process (the cuda engine's included), the CUDA
// runtime calls of every thread, and the training loop's own phases, and writes them as a Chrome
// trace (chrome://tracing, https://ui.perfetto.dev). scripts/trace_summary.py reads it back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::train::detail {

class StepTracer {
 public:
  // Records steps [first_step, first_step + steps) into `path` (empty: does nothing).
  StepTracer(std::string path, int64_t first_step, int64_t steps);
  ~StepTracer();
  StepTracer(const StepTracer&) = delete;
  StepTracer& operator=(const StepTracer&) = delete;

  // Called before the step numbered `step` (0-based) starts; starts or ends the recording.
  void before_step(int64_t step);
  // Ends a recording still running (a run shorter than the window) and writes it.
  void finish();
  bool active() const { return active_; }

 private:
  std::string path_;
  int64_t first_, steps_;
  bool active_ = false, done_ = false;
};

}  // namespace sluice::train::detail
