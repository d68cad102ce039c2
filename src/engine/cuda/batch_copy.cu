#include "engine/cuda/batch_copy.hpp"

#include <cuda_runtime.h>

#include <string>

#include "engine/cuda/detail/check.hpp"

namespace sluice::cuda_batch {

namespace {

__global__ void labels_to_float(const int32_t* in, float* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = float(in[i]);
}

}  // namespace

void* device_alloc(int device, size_t bytes, const char* what) {
  SLUICE_CUDA(cudaSetDevice(device));
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(std::string("out of GPU memory allocating ") + what + " (" + std::to_string(bytes) + " bytes; " +
                std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes free)");
  }
  return p;
}

void device_free(void* p) {
  if (p) cudaFree(p);
}

void copy_rows(const ChunkView& c, int64_t from, int64_t n, float* dense, int32_t* sparse, float* labels, int64_t at) {
  if (n <= 0) return;
  if (c.memory != MemoryKind::kDevice || !c.dense) throw Error("internal: copy_rows needs a device chunk with float dense values");
  const cudaStream_t s = static_cast<cudaStream_t>(c.stream);
  SLUICE_CUDA(cudaMemcpyAsync(dense + at * kNumDense, c.dense + from * kNumDense, size_t(n) * kNumDense * 4,
                              cudaMemcpyDeviceToDevice, s));
  static_assert(sizeof(int32_t) == sizeof(uint32_t));
  SLUICE_CUDA(cudaMemcpyAsync(sparse + at * kNumSparse, c.sparse + from * kNumSparse, size_t(n) * kNumSparse * 4,
                              cudaMemcpyDeviceToDevice, s));
  const int blocks = int(std::min<int64_t>((n + 255) / 256, 1024));
  labels_to_float<<<blocks, 256, 0, s>>>(c.labels + from, labels + at, n);
  SLUICE_CUDA_LAUNCHED("label conversion");
}

bool device_memory(int device, size_t* free_bytes, size_t* total_bytes) {
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  const bool ok = cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
  if (!ok) cudaGetLastError();
  cudaSetDevice(current);
  return ok;
}

void copy_to_host(void* dst, const void* src, size_t bytes, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  SLUICE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  SLUICE_CUDA(cudaStreamSynchronize(s));
}

void* event_create(int device) {
  SLUICE_CUDA(cudaSetDevice(device));
  cudaEvent_t e = nullptr;
  SLUICE_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void event_record(void* event, void* stream) {
  SLUICE_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

void event_wait(void* event) { SLUICE_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(event))); }

void event_destroy(void* event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

}  // namespace sluice::cuda_batch
