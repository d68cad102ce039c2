// Messages: sizes, durations and libtorch's errors in words; running out of memory reported as such
// (internal: includes libtorch).
#pragma once

#include <chrono>
#include <new>
#include <string>

#include <torch/torch.h>

#include "sluice/source.hpp"

namespace sluice::train {

// ---- errors -------------------------------------------------------------------------------------

// "33.8 M", "2.16 GB", "1m02s": sizes and durations for messages.
std::string count_text(double n);
std::string bytes_text(double bytes);
std::string duration_text(double seconds);

// Whether a libtorch error reports a failed allocation (host or GPU).
bool is_out_of_memory(const c10::Error& e);
// libtorch's message without its C++ backtrace (first line only when `first_line`).
std::string torch_message(const c10::Error& e, bool first_line = false);

// Runs f(). A failed allocation (std::bad_alloc, or a libtorch out-of-memory error) becomes
// sluice::Error("out of memory " + what()) (for a GPU with libtorch's own account of the memory
// appended); any other libtorch error becomes a sluice::Error with libtorch's message, without its
// backtrace. `what` is called only on failure.
template <class F, class What>
decltype(auto) oom_guard(const What& what, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw Error("out of memory " + what());
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e)) throw Error(torch_message(e));
    const std::string m = torch_message(e, true);
    // The GPU allocator says how much it tried to get and what it holds; the CPU one adds nothing.
    throw Error("out of memory " + what() + (m.find("CUDA") != std::string::npos ? ": " + m : std::string()));
  }
}

// Before a large allocation: throws sluice::Error("out of memory " + what()) when `bytes` can never
// fit on `device`: more than the machine's memory and swap (or the address-space limit) for the CPU,
// more than the GPU's memory for a GPU. Machines that overcommit memory would otherwise accept the
// allocation and fail much later, or have the process killed, while the memory is first touched.
template <class What>
void require_capacity(const What& what, double bytes, const torch::Device& device);
double device_capacity_bytes(const torch::Device& device);

template <class What>
void require_capacity(const What& what, double bytes, const torch::Device& device) {
  const double cap = device_capacity_bytes(device);
  if (cap > 0 && bytes > cap) throw Error("out of memory " + what());
}

namespace detail {

// Times (progress, rates, the benchmark): the steady clock, and the seconds between two of its points.
using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace detail

}  // namespace sluice::train
