// Tests that take a whole GPU's memory: run one at a time (ctest RUN_SERIAL), never beside other GPU
// tests. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/test_util.hpp"
#include "sluice/engine.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

using namespace sluice;
using namespace sluice_test;

// A GPU without room for the cuda engine's buffers: a clear error naming what needed how much, never a
// crash or a hang; once the memory is free again the same engine gives the cpu engine's bytes.
TEST(GpuMemory, CudaEngineOutOfMemoryIsAClearErrorAndTheGpuStaysUsable) {
  std::string why;
  if (!cuda_device_available(&why)) GTEST_SKIP() << "no CUDA GPU is usable: " << why;
#if defined(SLUICE_HAVE_CUDA)
  std::vector<void*> hog;
  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  // Take all but about 16 MiB: less than the device buffers of one 64 MiB block.
  while (free_b > (size_t(48) << 20)) {
    void* p = nullptr;
    const size_t want = std::min(free_b - (size_t(16) << 20), size_t(1) << 30);
    if (cudaMalloc(&p, want) != cudaSuccess) {
      cudaGetLastError();
      break;
    }
    hog.push_back(p);
    ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  }
  EngineOptions o;
  o.threads = 2;
  o.block_bytes = size_t(64) << 20;
  o.ids = IdMode::kFirstSeen;
  std::string error;
  try {
    run_engine(o, {sample_path()}, nullptr, "cuda");
  } catch (const Error& e) {
    error = e.what();
  }
  for (void* p : hog) cudaFree(p);
  EXPECT_NE(error.find("out of GPU memory"), std::string::npos) << "error: '" << error << "'";
  EXPECT_EQ(error.find("CUDA: "), std::string::npos) << error;  // ours, not a bare runtime error
  EngineStats cpu_stats, gpu_stats;
  const Collected cpu = run_engine(o, {sample_path()}, &cpu_stats, "cpu");
  const Collected gpu = run_engine(o, {sample_path()}, &gpu_stats, "cuda");
  EXPECT_EQ(gpu.rows, 200);
  EXPECT_EQ(cpu.labels, gpu.labels);
  EXPECT_TRUE(same_bits(cpu.dense, gpu.dense));
  EXPECT_EQ(cpu.sparse, gpu.sparse);
#endif
}
