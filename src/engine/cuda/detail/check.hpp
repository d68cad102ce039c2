// CUDA runtime calls checked: every failure becomes a sluice::Error naming the call.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "sluice/source.hpp"

namespace sluice::cuda_detail {

[[noreturn]] inline void fail(cudaError_t e, const char* what) {
  cudaGetLastError();  // clear a sticky non-fatal error so that the next call does not see it
  throw Error(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(e));
}

#define SLUICE_CUDA(call)                                          \
  do {                                                             \
    const cudaError_t sluice_cuda_err_ = (call);                   \
    if (sluice_cuda_err_ != cudaSuccess) ::sluice::cuda_detail::fail(sluice_cuda_err_, #call); \
  } while (0)

// After a kernel launch: the launch itself (configuration errors) is checked here; faults inside
// the kernel surface at the next synchronisation.
#define SLUICE_CUDA_LAUNCHED(what) SLUICE_CUDA(cudaGetLastError())

}  // namespace sluice::cuda_detail
