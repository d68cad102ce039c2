// Device-side helpers of the batch ring (src/dataset) for chunks that the cuda engine hands out in
// GPU memory: device buffers, copying rows of a chunk into a batch slot (labels become float32),
// events. Streams and events are passed as void* so that callers need no CUDA headers; only builds
// with SLUICE_HAVE_CUDA define these.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sluice/engine.hpp"

namespace sluice::cuda_batch {

// cudaMalloc on `device`; throws sluice::Error (naming `what`, the size and the free memory).
void* device_alloc(int device, size_t bytes, const char* what);
void device_free(void* p);

// Enqueues on the chunk's stream: rows [from, from + n) of a device chunk (kLog dense) into a batch
// slot at row `at`: dense float32 [*, 13], sparse int32 [*, 26], labels float32 [*].
void copy_rows(const ChunkView& c, int64_t from, int64_t n, float* dense, int32_t* sparse, float* labels, int64_t at);

// The GPU's free and total memory; false when it cannot be asked.
bool device_memory(int device, size_t* free_bytes, size_t* total_bytes);

// Copies device memory to the host, ordered after the work on `stream`, and waits for it.
void copy_to_host(void* dst, const void* src, size_t bytes, void* stream);

// Events: create (on the stream's device), record on a stream, wait on the host, destroy.
void* event_create(int device);
void event_record(void* event, void* stream);
void event_wait(void* event);
void event_destroy(void* event);

}  // namespace sluice::cuda_batch
