// Batches are views, not vectors: pointers into memory owned by a producer's ring of buffers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "sluice/schema.hpp"

namespace sluice {

enum class MemoryKind : uint8_t { kHost, kPinnedHost, kDevice };

// A non-owning view of one training batch, row-major:
//   dense  float32 [rows, 13]   (ln(x+1) of the clamped ints)
//   sparse int32   [rows, 26]   (embedding-table ids: vocabulary ids or modulo'd values)
//   labels float32 [rows]       (0 or 1)
// The memory stays valid while the Lease that handed it out is alive.
struct BatchView {
  int64_t rows = 0;
  const float* dense = nullptr;
  const int32_t* sparse = nullptr;
  const float* labels = nullptr;
  MemoryKind memory = MemoryKind::kHost;
  int device = -1;             // CUDA ordinal when memory == kDevice
  void* stream = nullptr;      // cudaStream_t the batch was produced on (device batches)
  uint64_t first_row = 0;      // position of the first row in the producer's row stream
};

// A batch handed out by a producer. Releasing it (destruction or release()) returns its buffers to
// the producer's ring, so the consumer releases it only once all its work reading the batch is done
// (on a GPU: after an event recorded behind that work has completed). A device batch is ready when it
// is handed out: the producer has synchronised the stream it was made on.
class Lease {
 public:
  Lease() = default;
  Lease(BatchView view, std::function<void()> on_release)
      : view_(view), on_release_(std::move(on_release)) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Lease(Lease&& o) noexcept { *this = std::move(o); }
  Lease& operator=(Lease&& o) noexcept {
    if (this != &o) {
      release();
      view_ = o.view_;
      on_release_ = std::move(o.on_release_);
      o.on_release_ = nullptr;
    }
    return *this;
  }
  ~Lease() { release(); }
  const BatchView& view() const { return view_; }
  explicit operator bool() const { return view_.rows > 0; }
  void release() {
    if (on_release_) {
      auto f = std::move(on_release_);
      on_release_ = nullptr;
      f();
    }
  }

 private:
  BatchView view_;
  std::function<void()> on_release_;
};

// Anything that yields batches in row order. next() blocks until a batch is ready and returns an
// empty Lease at the end of the stream. The producer works ahead into a bounded ring.
class BatchStream {
 public:
  virtual ~BatchStream() = default;
  virtual Lease next() = 0;
  // Like next(), but waits at most `seconds`: false (and *out untouched) when no batch and no end was
  // ready by then. Lets a caller check for interruptions between slices of waiting.
  virtual bool next_for(double seconds, Lease* out) {
    (void)seconds;
    *out = next();
    return true;
  }
  // Seconds next() spent blocked waiting for data so far (the consumer's stall time).
  virtual double wait_seconds() const = 0;
};

}  // namespace sluice
