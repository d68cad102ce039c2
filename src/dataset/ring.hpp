// The batch ring: `depth` slots of `batch` rows that a producer thread fills in row order and the
// consumer leases in order and gives back (StreamOptions::grow: more slots when the consumer holds
// them all). Slots live in host memory (pageable, or page-locked
// through StreamOptions' allocator) or, for chunks the cuda engine makes on the GPU, in device memory.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "sluice/batch.hpp"
#include "sluice/dataset.hpp"
#include "sluice/engine.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/batch_copy.hpp"
#endif

namespace sluice::dataset_detail {

struct StopProducing {};  // the consumer went away

// The ring: `depth` slots of `batch` rows; the producer fills them in order, the consumer leases
// them in order and gives them back.
class RingStream : public BatchStream {
 public:
  // `device` >= 0: the slots live in that GPU's memory and are filled from device chunks.
  RingStream(int64_t batch, int depth, const StreamOptions& o, int device = -1)
      : batch_(batch), o_(o), device_(device) {
    if (batch <= 0) throw Error("batch size must be positive");
    depth = std::max(2, depth);
    for (int i = 0; i < depth; ++i) add_slot();
  }
  ~RingStream() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (producer_.joinable()) producer_.join();
    for (auto& s : slots_) {
#if defined(SLUICE_HAVE_CUDA)
      // Wait for copies still in flight into the slot before its memory goes.
      if (s.ready) {
        try {
          cuda_batch::event_wait(s.ready);
        } catch (...) {
        }
        cuda_batch::event_destroy(s.ready);
      }
#endif
      release_mem(s.dense);
      release_mem(s.sparse);
      release_mem(s.labels);
    }
  }

  void start(std::function<void(RingStream&)> produce) {
    producer_ = std::thread([this, produce] {
      try {
        produce(*this);
        flush();
      } catch (const StopProducing&) {
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
      cv_.notify_all();
    });
  }

  Lease next() override {
    Lease l;
    take(nullptr, &l);
    return l;
  }
  bool next_for(double seconds, Lease* out) override { return take(&seconds, out); }
  // Slots in the ring now (grows with StreamOptions::grow).
  size_t slots() const {
    std::lock_guard<std::mutex> lk(mu_);
    return slots_.size();
  }

 private:
  // next() and next_for(): waits for a batch (or the end) at most `*seconds` when given.
  bool take(const double* seconds, Lease* out) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lk(mu_);
    // Growing: the producer waits for a free slot while none is ready, so the consumer holds every
    // slot; only a new one lets the stream go on.
    const auto stuck = [&] { return o_.grow && producer_waiting_ && free_.empty() && ready_.empty() && !done_; };
    const auto wake = [&] { return !ready_.empty() || done_ || stuck(); };
    bool timed_out = false;
    for (;;) {
      if (seconds) {
        const auto until = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(std::max(0.0, *seconds)));
        if (!cv_.wait_until(lk, until, wake)) {
          timed_out = true;
          break;
        }
      } else {
        cv_.wait(lk, wake);
      }
      if (!stuck()) break;
      add_slot();
      cv_.notify_all();
    }
    wait_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (timed_out) return false;
    if (ready_.empty()) {
      if (error_) std::rethrow_exception(error_);
      *out = Lease();
      return true;
    }
    const size_t i = ready_.front();
    ready_.pop_front();
    Slot& s = slots_[i];
    BatchView v;
    v.rows = s.rows;
    v.dense = s.dense;
    v.sparse = s.sparse;
    v.labels = s.labels;
    v.memory = o_.host_alloc ? MemoryKind::kPinnedHost : MemoryKind::kHost;
    v.first_row = s.first_row;
#if defined(SLUICE_HAVE_CUDA)
    if (device_ >= 0) {
      // Device batch: handed out ready (the copies that filled it have completed). Waiting for them
      // is waiting for data too.
      lk.unlock();
      const auto t1 = std::chrono::steady_clock::now();
      cuda_batch::event_wait(s.ready);
      const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      lk.lock();
      wait_ += w;
      v.memory = MemoryKind::kDevice;
      v.device = device_;
    }
#endif
    *out = Lease(v, [this, i] {
      std::lock_guard<std::mutex> g(mu_);
      free_.push_back(i);
      cv_.notify_all();
    });
    return true;
  }

 public:
  double wait_seconds() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return wait_;
  }

  // Producer side: append rows (ids already final, as uint32).
  void add(const float* dense, const uint32_t* sparse, const int32_t* labels, int64_t n) {
    int64_t done = 0;
    while (done < n) {
      if (cur_ < 0) acquire();
      Slot& s = *cur_slot_;
      const int64_t k = std::min(n - done, batch_ - s.rows);
      std::memcpy(s.dense + s.rows * kNumDense, dense + done * kNumDense, size_t(k) * kNumDense * 4);
      std::memcpy(s.sparse + s.rows * kNumSparse, sparse + done * kNumSparse, size_t(k) * kNumSparse * 4);
      for (int64_t r = 0; r < k; ++r) s.labels[s.rows + r] = float(labels[done + r]);
      s.rows += k;
      done += k;
      if (s.rows == batch_) publish();
    }
  }
  // Producer side, device chunks: rows [from, from + n) of `c` (GPU memory, copies enqueued on the
  // chunk's stream).
  void add_device(const ChunkView& c, int64_t from, int64_t n) {
#if defined(SLUICE_HAVE_CUDA)
    int64_t done = 0;
    while (done < n) {
      if (cur_ < 0) acquire();
      Slot& s = *cur_slot_;
      const int64_t k = std::min(n - done, batch_ - s.rows);
      cuda_batch::copy_rows(c, from + done, k, s.dense, s.sparse, s.labels, s.rows);
      stream_ = c.stream;
      s.rows += k;
      done += k;
      if (s.rows == batch_) publish();
    }
#else
    (void)c;
    (void)from;
    (void)n;
    throw Error("internal: device chunks in a build without CUDA");
#endif
  }
  bool on_device() const { return device_ >= 0; }
  // The consumer went away: a producer in the middle of a batch can stop early.
  bool stopping() const {
    std::lock_guard<std::mutex> lk(mu_);
    return stop_;
  }
  // The engine run whose stream the copies went on has ended (its work is complete and the stream is
  // gone): a partial batch is published on the default stream from now on.
  void stream_ended() { stream_ = nullptr; }

  // Rows are row-major int32 ids already; label conversion included.
  void flush() {
    if (cur_ >= 0 && cur_slot_->rows > 0) publish();
  }
  uint64_t next_row() const { return row_; }
  const StreamOptions& options() const { return o_; }

 private:
  struct Slot {
    float* dense = nullptr;
    int32_t* sparse = nullptr;
    float* labels = nullptr;
    int64_t rows = 0;
    uint64_t first_row = 0;
    void* ready = nullptr;  // device slots: event recorded after the copies that filled it
  };
  // A new free slot (the constructor, or growing with mu_ held).
  void add_slot() {
    Slot s;
    s.dense = static_cast<float*>(alloc(size_t(batch_) * kNumDense * 4, "batch dense values"));
    s.sparse = static_cast<int32_t*>(alloc(size_t(batch_) * kNumSparse * 4, "batch ids"));
    s.labels = static_cast<float*>(alloc(size_t(batch_) * 4, "batch labels"));
#if defined(SLUICE_HAVE_CUDA)
    if (device_ >= 0) s.ready = cuda_batch::event_create(device_);
#endif
    slots_.push_back(s);
    free_.push_back(slots_.size() - 1);
  }
  void* alloc(size_t n, const char* what) {
#if defined(SLUICE_HAVE_CUDA)
    if (device_ >= 0) return cuda_batch::device_alloc(device_, n, what);
#endif
    void* p = nullptr;
    try {
      p = o_.host_alloc ? o_.host_alloc(n) : ::operator new(n);
    } catch (const std::bad_alloc&) {
      p = nullptr;
    }
    if (!p) throw Error(std::string("out of memory allocating the batch ring's ") + what + " (" + std::to_string(n) + " bytes)");
    return p;
  }
  void release_mem(void* p) {
    if (!p) return;
#if defined(SLUICE_HAVE_CUDA)
    if (device_ >= 0) {
      cuda_batch::device_free(p);
      return;
    }
#endif
    if (o_.host_free) o_.host_free(p);
    else ::operator delete(p);
  }
  void acquire() {
    std::unique_lock<std::mutex> lk(mu_);
    if (free_.empty()) {
      producer_waiting_ = true;
      cv_.notify_all();
    }
    cv_.wait(lk, [&] { return !free_.empty() || stop_; });
    producer_waiting_ = false;
    if (stop_) throw StopProducing{};
    cur_ = int64_t(free_.front());
    free_.pop_front();
    cur_slot_ = &slots_[size_t(cur_)];  // deque: stays valid while slots are added
    cur_slot_->rows = 0;
    cur_slot_->first_row = row_;
  }
  void publish() {
#if defined(SLUICE_HAVE_CUDA)
    if (device_ >= 0) cuda_batch::event_record(cur_slot_->ready, stream_);
#endif
    row_ += uint64_t(cur_slot_->rows);
    std::lock_guard<std::mutex> lk(mu_);
    ready_.push_back(size_t(cur_));
    cur_ = -1;
    cur_slot_ = nullptr;
    cv_.notify_all();
  }

  int64_t batch_;
  StreamOptions o_;
  int device_ = -1;
  void* stream_ = nullptr;  // device slots: the stream of the chunks being copied in
  std::deque<Slot> slots_;  // indexed under mu_ (the producer's own slot through cur_slot_)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> free_, ready_;
  int64_t cur_ = -1;
  Slot* cur_slot_ = nullptr;
  bool producer_waiting_ = false;  // the producer waits for a free slot
  uint64_t row_ = 0;
  bool stop_ = false, done_ = false;
  std::exception_ptr error_;
  double wait_ = 0;
  std::thread producer_;
};

}  // namespace sluice::dataset_detail
