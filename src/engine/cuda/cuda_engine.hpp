// The cuda engine: raw bytes in, columns (or training batches) in GPU memory out. Private to the
// engine layer (make_engine builds it).
#pragma once

#include <memory>
#include <string>

#include "sluice/engine.hpp"

namespace sluice {

// Builds the cuda engine (the caller has checked cuda_probe_device).
std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& opts);

// Whether a CUDA GPU is usable; otherwise `why` says what is missing (no driver, no device, ...).
bool cuda_probe_device(std::string* why);

}  // namespace sluice
