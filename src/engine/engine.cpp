// Engine selection and the parts of the engine layer every engine shares.
#include <algorithm>
#include <thread>

#include "engine/cpu/cpu_engine.hpp"
#include "sluice/engine.hpp"
#include "source/blocks.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/cuda_engine.hpp"
#endif
#if defined(SLUICE_HAVE_FPGA)
#include "engine/fpga/fpga_engine.hpp"
#endif

namespace sluice {

std::string describe_bad_row(RowError err, int field) {
  std::string s = row_error_name(err);
  if (field >= 0) {
    s += " in ";
    s += field_name(field);
  }
  return s;
}

Vocabulary Engine::take_vocabulary() {
  throw Error(std::string("internal: the ") + name() + " engine built no vocabulary");
}

int default_read_threads() {
  const int cores = int(std::thread::hardware_concurrency());
  return std::clamp(cores / 2, 1, 8);
}

bool cuda_device_available(std::string* why) {
#if defined(SLUICE_HAVE_CUDA)
  return cuda_probe_device(why);
#else
  if (why) *why = "this build of sluice has no CUDA support (built without the CUDA toolkit)";
  return false;
#endif
}

std::vector<std::string> available_engines() {
  std::vector<std::string> v{"cpu"};
#if defined(SLUICE_HAVE_CUDA)
  v.push_back("cuda");
#endif
#if defined(SLUICE_HAVE_FPGA)
  v.push_back("fpga");
#endif
  return v;
}

std::unique_ptr<Engine> make_engine(const std::string& name, const EngineOptions& opts) {
  if (name == "cpu") return std::make_unique<CpuEngine>(opts);
  if (name == "auto") {
#if defined(SLUICE_HAVE_CUDA)
    if (cuda_device_available(nullptr)) return make_cuda_engine(opts);
#endif
    EngineOptions o = opts;
    o.output = MemoryKind::kHost;
    return std::make_unique<CpuEngine>(o);
  }
  if (name == "cuda") {
    std::string why;
    if (!cuda_device_available(&why)) throw Error("--engine cuda: " + why);
#if defined(SLUICE_HAVE_CUDA)
    return make_cuda_engine(opts);
#endif
  }
#if defined(SLUICE_HAVE_FPGA)
  if (name == "fpga") return make_fpga_engine(opts);
#endif
  if (name == "fpga") throw Error("--engine fpga is not available in this build: it was built without Verilator, "
                                  "which the fpga engine's simulated core needs (available: cpu" +
                                  std::string(cuda_device_available(nullptr) ? ", cuda" : "") + ")");
  std::string list;
  for (const auto& e : available_engines()) list += (list.empty() ? "" : ", ") + e;
  throw Error("unknown engine '" + name + "' (expected auto, " + list + ")");
}

size_t default_block_bytes(const std::string& engine) {
  return engine == "cuda" ? size_t(64) << 20 : size_t(4) << 20;
}

EngineStats run_files(Engine& engine, const std::vector<std::string>& inputs, const ChunkSink& sink) {
  BlockReader blocks(inputs, engine.options().block_bytes, true, size_t(std::max(0, engine.options().threads)));
  return engine.run(blocks, sink);
}

}  // namespace sluice
