// Batches on their way to the model: the device, streams opened and read with their failures in words,
// batch views wrapped as tensors, and leases kept until the device is done with them (internal: includes
// libtorch).
#pragma once

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"

namespace sluice::train::detail {

// "cpu", "cuda" or "cuda:N" as a device; throws sluice::Error when it is unknown or not there.
torch::Device resolve_device(const std::string& name);

// TF32 matrix products (cuBLAS, cuDNN) for Precision::kTf32 only.
void apply_precision(Precision p);

// Waits for a GPU's queued work (nothing for the CPU).
void sync_device(const torch::Device& d);

// Keeps leases alive until the device work that reads their memory has completed. On the CPU every op is
// synchronous, so a lease is released at once. On CUDA an event is recorded on the current stream after
// the step's work was enqueued; leases are released once their event has completed, and at most
// max_pending are held (the producer's ring must keep a free slot, or next() would wait forever).
class LeaseKeeper {
 public:
  LeaseKeeper(torch::Device device, size_t max_pending) : device_(device), max_pending_(max_pending) {}
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;
  ~LeaseKeeper() {
    try {
      drain();
    } catch (...) {
    }
  }

  void retire(Lease lease) {
    if (!device_.is_cuda()) {
      lease.release();
      return;
    }
    c10::Event event(c10::DeviceType::CUDA);
    c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
    event.record(impl.getStream(device_));
    pending_.push_back(Pending{std::move(lease), std::move(event)});
    while (!pending_.empty() && pending_.front().event.query()) pending_.pop_front();
    while (pending_.size() > max_pending_) wait_front();
  }

  void drain() {
    while (!pending_.empty()) wait_front();
  }

 private:
  struct Pending {
    Lease lease;
    c10::Event event;
  };
  // Waits inside the driver rather than in a loop of queries: each query takes the CUDA driver's lock,
  // which the data pipeline's thread needs for its copies and launches.
  void wait_front() {
    pending_.front().event.synchronize();
    pending_.pop_front();
  }

  torch::Device device_;
  size_t max_pending_;
  std::deque<Pending> pending_;
};

struct Staged {
  torch::Tensor dense, flat_ids, labels;
  int64_t rows = 0;
};

// Throws sluice::Error naming the row when a batch holds an id outside its table (id_modulo > 0: any
// non-negative id).
void check_batch_ids(const BatchView& v, const std::vector<int64_t>& sizes, uint64_t id_modulo);

// Wraps a batch's memory as tensors (no copy); host batches are copied to a GPU model's device
// (asynchronously when the memory is pinned). The lease must outlive the work that reads them.
Staged stage(const BatchView& v, const Dlrm& model, const TrainOptions& o);

// Rows [first, first + rows) of a batch (a rank's share of a global batch), the same memory.
inline BatchView slice_rows(const BatchView& v, int64_t first, int64_t rows) {
  BatchView s = v;
  s.rows = rows;
  s.dense += first * kNumDense;
  s.sparse += first * kNumSparse;
  s.labels += first;
  s.first_row += static_cast<uint64_t>(first);
  return s;
}

// A batch of no rows on the model's device (a rank's empty share of a batch smaller than the ranks).
Staged empty_staged(const Dlrm& model);

// The labels of a whole batch, copied to the model's device.
torch::Tensor batch_labels(const BatchView& v, const Dlrm& model);

// How many leases a LeaseKeeper may hold for a ring of ring_depth batches.
inline size_t max_pending_for(int ring_depth) { return static_cast<size_t>(std::max(0, ring_depth - 2)); }

// Bytes of one row in a host batch: 13 dense floats, 26 ids, a label.
inline constexpr double kRowBytes = 4.0 * (kNumDense + kNumSparse + 1);

// Runs f() (opening a stream, or taking a batch from it); a thread the data pipeline could not start
// (std::system_error, most often EAGAIN: no memory left for its stack) becomes a clear sluice::Error.
template <class F>
decltype(auto) pipeline_guard(F&& f) {
  try {
    return f();
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::resource_unavailable_try_again)
      throw Error("the data pipeline could not start a thread (" + e.code().message() +
                  "): too little memory for its stack, or too many threads; fewer --data-threads need less");
    throw Error("the data pipeline failed: " + std::string(e.what()) + " (" + e.code().message() + ")");
  }
}

// Opens a stream; running out of memory for its ring of batches is reported as such.
std::unique_ptr<BatchStream> open_stream(const StreamFactory& streams, Split split, uint64_t start_row,
                                         int64_t batch_size, const TrainOptions& o);

// The next batch of a stream; a producer that ran out of memory is reported as such.
Lease next_batch(BatchStream& stream, int64_t batch_size);

// Takes the CPU BLAS library's work buffers up front (see batches.cpp); throws sluice::Error when the
// memory is not there.
void reserve_blas_buffers();

}  // namespace sluice::train::detail
