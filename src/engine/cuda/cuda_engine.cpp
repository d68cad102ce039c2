// The cuda engine's host side. A reader thread cuts the inputs into blocks in page-locked staging
// buffers: streams and gzip through the BlockReader; regular files are mapped, cut there, and each
// block read into a buffer by EngineOptions::read_threads threads (or, with 0 read threads, the mapping
// is registered with the GPU and copied from without passing through a core). The calling thread keeps a
// few blocks in flight: for each, a copy to the GPU on the copy stream, then the block pipeline and
// the vocabulary step on the compute stream. Chunks are handed out in input order once their event
// has completed; the GPU meanwhile works on the next blocks.
#include "engine/cuda/cuda_engine.hpp"

#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/cuda/detail/block_pipeline.hpp"
#include "engine/cuda/detail/check.hpp"
#include "engine/cuda/detail/vocab_tables.hpp"
#include "sluice/interrupt.hpp"
#include "source/blocks.hpp"
#include "source/parallel_read.hpp"

namespace sluice {

using cuda_detail::BadLine;
using cuda_detail::BlockCounts;
using cuda_detail::BlockPipeline;
using cuda_detail::VocabTables;

bool cuda_probe_device(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("no CUDA GPU is usable (") + cudaGetErrorString(e) + ")";
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA GPU is visible";
    return false;
  }
  return true;
}

namespace {

constexpr int kSlots = 3;            // blocks in flight on the GPU
constexpr size_t kMinBlock = 1024;

// Page-locked host memory. Buffers of 2 MiB and more are anonymous memory on transparent huge pages,
// registered with the GPU: on the H100 host 256 MiB take about 60 ms that way, against 130-390 ms
// through cudaHostAlloc, which locks (and maps for the GPU) 4 KiB pages one by one
// (bench/bench_read_path --only alloc). Smaller ones, or where registering fails, use cudaHostAlloc.
constexpr size_t kHugePage = size_t{2} << 20;
std::mutex registered_mu;
std::unordered_map<void*, size_t>& registered_buffers() {
  // Never destroyed: an engine that outlives static destruction (one held by a static object) still
  // frees its buffers through it.
  static auto* m = new std::unordered_map<void*, size_t>();
  return *m;
}

void* pinned_alloc(size_t n) {
  n = std::max<size_t>(n, 1);
  if (n >= kHugePage) {
    const size_t len = (n + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, len);
    if (p) {
      (void)::madvise(p, len, MADV_HUGEPAGE);
      std::memset(p, 0, len);  // the pages exist (huge where the kernel allows) before they are locked
      if (cudaHostRegister(p, len, cudaHostRegisterPortable) == cudaSuccess) {
        std::lock_guard<std::mutex> g(registered_mu);
        registered_buffers().emplace(p, len);
        return p;
      }
      cudaGetLastError();
      std::free(p);
    }
  }
  void* p = nullptr;
  if (cudaHostAlloc(&p, n, cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}
void pinned_free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> g(registered_mu);
    auto it = registered_buffers().find(p);
    if (it != registered_buffers().end()) {
      registered_buffers().erase(it);
      cudaHostUnregister(p);
      std::free(p);
      return;
    }
  }
  cudaFreeHost(p);
}
BlockBuffer::Allocator pinned_allocator() { return {pinned_alloc, pinned_free}; }

template <class T>
T* pinned_array(size_t n, const char* what) {
  void* p = pinned_alloc(n * sizeof(T));
  if (!p) throw Error(std::string("out of page-locked host memory allocating ") + what + " (" +
                      std::to_string(n * sizeof(T)) + " bytes)");
  return static_cast<T*>(p);
}

// A block read by the reader thread, waiting for its turn on the GPU.
struct Staged {
  Block block;
  BlockBuffer* buffer = nullptr;  // the staging buffer holding it (unless mapped)
  bool end = false;               // no more blocks
  std::exception_ptr error;
};

// Waits for an event asleep (its event is created with cudaEventBlockingSync): polling it would take
// the CUDA driver's lock thousands of times a second, which the training thread's launches need too.
// A block's GPU work takes milliseconds, so Ctrl-C is still seen promptly.
void wait_event(cudaEvent_t e, const char* what) {
  check_interrupt();
  const cudaError_t r = cudaEventSynchronize(e);
  if (r != cudaSuccess) cuda_detail::fail(r, what);
  check_interrupt();
}

// One block in flight: its GPU buffers, page-locked copies of what the host reads back, events.
struct Slot {
  std::unique_ptr<BlockPipeline> pipe;
  cudaEvent_t copied = nullptr, parsed = nullptr, done = nullptr;
  BlockCounts* counts = nullptr;          // pinned
  BadLine* bad = nullptr;                 // pinned
  unsigned long long* entries = nullptr;  // pinned: vocabulary sizes after this block
  int32_t* labels = nullptr;              // pinned host output
  float* dense = nullptr;
  int32_t* dense_int = nullptr;
  uint32_t* sparse = nullptr;
  size_t host_rows = 0;                   // capacity of the host output
  // per use
  Staged staged;
  uint64_t vocab_step = 0;
  bool vocab_enqueued = false;

  ~Slot() {
    for (cudaEvent_t e : {copied, parsed, done})
      if (e) cudaEventDestroy(e);
    for (void* p : {static_cast<void*>(counts), static_cast<void*>(bad), static_cast<void*>(entries),
                    static_cast<void*>(labels), static_cast<void*>(dense), static_cast<void*>(dense_int),
                    static_cast<void*>(sparse)})
      pinned_free(p);
  }
};

// Everything a run needs on the GPU and in page-locked memory. Kept by the engine between runs (a
// dataset runs the engine once per file and epoch): allocating and freeing GPU memory synchronises the
// whole device, which would stall the training that runs beside the engine.
struct CudaRunResources {
  cudaStream_t copy = nullptr, compute = nullptr;
  Slot slots[kSlots];
  std::deque<BlockBuffer> staging;
  unsigned long long* d_rows_before = nullptr;  // rows handed out so far (row_limit)

  CudaRunResources() {
    SLUICE_CUDA(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    SLUICE_CUDA(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    for (Slot& s : slots) {
      SLUICE_CUDA(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
      SLUICE_CUDA(cudaEventCreateWithFlags(&s.parsed, cudaEventDisableTiming | cudaEventBlockingSync));
      SLUICE_CUDA(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming | cudaEventBlockingSync));
      s.counts = pinned_array<BlockCounts>(1, "block counts");
      s.bad = pinned_array<BadLine>(cuda_detail::kMaxBadKept, "bad-line descriptions");
      s.entries = pinned_array<unsigned long long>(VocabTables::kEntriesWords, "vocabulary sizes");
    }
    for (int i = 0; i < kSlots + 1; ++i) staging.emplace_back(pinned_allocator());
    SLUICE_CUDA(cudaMalloc(&d_rows_before, sizeof(unsigned long long)));
  }
  ~CudaRunResources() {
    cudaStreamSynchronize(copy);
    cudaStreamSynchronize(compute);
    if (d_rows_before) cudaFree(d_rows_before);
    cudaStreamDestroy(copy);
    cudaStreamDestroy(compute);
  }
};

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(EngineOptions opts) : opts_(opts) {
    if (opts_.ids == IdMode::kDistinct) throw Error("internal: the cuda engine keeps its vocabularies on the GPU");
    if (opts_.ids == IdMode::kVocab && !opts_.vocab) throw Error("internal: IdMode::kVocab without a vocabulary");
    if (opts_.block_bytes < kMinBlock) opts_.block_bytes = kMinBlock;
    SLUICE_CUDA(cudaSetDevice(opts_.device));
    SLUICE_CUDA(cudaStreamCreateWithFlags(&vocab_stream_, cudaStreamNonBlocking));
    if (opts_.ids == IdMode::kFirstSeen) {
      vocab_ = std::make_unique<VocabTables>(opts_.id_capacity, opts_.max_ind_range,
                                             opts_.keep_counts || opts_.min_freq > 1);
    } else if (opts_.ids == IdMode::kVocab) {
      vocab_ = std::make_unique<VocabTables>(0, 0);
      vocab_->load(*opts_.vocab, opts_.unseen, vocab_stream_);
    }
  }

  ~CudaEngine() override {
    cudaSetDevice(opts_.device);
    pool_.clear();
    cudaStreamSynchronize(vocab_stream_);
    if (last_vocab_) cudaEventDestroy(last_vocab_);
    vocab_.reset();
    cudaStreamDestroy(vocab_stream_);
  }

  const char* name() const override { return "cuda"; }
  bool supports(IdMode m) const override { return m != IdMode::kDistinct; }
  const EngineOptions& options() const override { return opts_; }

  EngineStats run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit) override;

  Vocabulary take_vocabulary() override {
    std::lock_guard<std::mutex> g(vocab_mu_);
    if (final_vocab_) return std::move(*final_vocab_);
    if (!vocab_ || opts_.ids != IdMode::kFirstSeen) throw Error("internal: the cuda engine built no vocabulary");
    SLUICE_CUDA(cudaSetDevice(opts_.device));
    if (last_vocab_) SLUICE_CUDA(cudaStreamWaitEvent(vocab_stream_, last_vocab_, 0));
    return vocab_->export_vocabulary(opts_.min_freq, vocab_stream_);
  }

 private:
  EngineStats pass(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit, bool first_seen, bool apply);
  std::unique_ptr<CudaRunResources> acquire() {
    {
      std::lock_guard<std::mutex> g(pool_mu_);
      if (!pool_.empty()) {
        auto r = std::move(pool_.back());
        pool_.pop_back();
        return r;
      }
    }
    return std::make_unique<CudaRunResources>();
  }
  void release(std::unique_ptr<CudaRunResources> r) {
    std::lock_guard<std::mutex> g(pool_mu_);
    pool_.push_back(std::move(r));
  }

  EngineOptions opts_;
  cudaStream_t vocab_stream_ = nullptr;  // loads and exports of the vocabulary
  std::mutex vocab_mu_;                  // the vocabulary is shared by concurrent runs
  cudaEvent_t last_vocab_ = nullptr;     // the last vocabulary step enqueued (any run)
  std::unique_ptr<VocabTables> vocab_;
  std::unique_ptr<Vocabulary> final_vocab_;  // min_freq > 1: built after the first pass
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<CudaRunResources>> pool_;
};

EngineStats CudaEngine::run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit) {
  SLUICE_CUDA(cudaSetDevice(opts_.device));
  if (opts_.ids != IdMode::kFirstSeen || opts_.min_freq <= 1) {
    return pass(blocks, sink, row_limit, opts_.ids == IdMode::kFirstSeen, opts_.ids == IdMode::kVocab);
  }
  {
    std::lock_guard<std::mutex> g(vocab_mu_);
    if (final_vocab_) {
      // The vocabulary was built by an earlier run: apply it.
      return pass(blocks, sink, row_limit, false, true);
    }
  }
  // min_freq > 1: the counts decide which values get ids, so the first pass only counts (first-seen
  // order), then the vocabulary is applied in a second pass.
  for (size_t f = 0; f < blocks.files(); ++f) {
    if (is_stdin_path(blocks.path(f))) throw Error("--min-freq reads the inputs twice: standard input cannot be read twice");
  }
  pass(blocks, [](const ChunkView&) { return true; }, row_limit, true, false);
  Vocabulary v;
  {
    std::lock_guard<std::mutex> g(vocab_mu_);
    if (last_vocab_) SLUICE_CUDA(cudaStreamWaitEvent(vocab_stream_, last_vocab_, 0));
    v = vocab_->export_vocabulary(opts_.min_freq, vocab_stream_);
    auto tables = std::make_unique<VocabTables>(0, 0);
    tables->load(v, Vocabulary::Unseen::kZero, vocab_stream_);
    vocab_ = std::move(tables);
    final_vocab_ = std::make_unique<Vocabulary>(std::move(v));
  }
  std::vector<std::string> paths;
  for (size_t f = 0; f < blocks.files(); ++f) paths.push_back(blocks.path(f));
  BlockReader again(paths, blocks.block_bytes(), blocks.maps_files(), blocks.inflate_ahead());
  return pass(again, sink, row_limit, false, true);
}

EngineStats CudaEngine::pass(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit, bool first_seen,
                             bool apply) {
  EngineStats stats;
  stats.rows_per_file.assign(blocks.files(), 0);
  const bool clamped = opts_.dense == DenseOut::kClampedInt;
  const bool host_out = opts_.output != MemoryKind::kDevice;
  const size_t block_bytes = std::max(opts_.block_bytes, kMinBlock);
  std::unique_ptr<CudaRunResources> res = acquire();
  CudaRunResources& R = *res;
  const cudaStream_t copy = R.copy, compute = R.compute;

  std::unordered_map<size_t, void*> registered;  // file -> registered mapping
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Staged> ready;
  std::deque<BlockBuffer*> free_staging;
  for (auto& b : R.staging) free_staging.push_back(&b);
  bool stop = false;
  std::thread reader;
  std::unique_ptr<ParallelRead> preader;  // read_threads > 0: mapped files' blocks into staging buffers
  // SLUICE_ENGINE_PROFILE=1: where the run's time goes, printed at its end (seconds).
  static const bool profile = [] { const char* e = std::getenv("SLUICE_ENGINE_PROFILE"); return e && *e == '1'; }();
  using PClock = std::chrono::steady_clock;
  double p_wait_buf = 0, p_next = 0, p_read = 0, p_take = 0, p_parsed = 0, p_done = 0;
  const auto p_t0 = PClock::now();
  auto p_since = [](PClock::time_point a) { return std::chrono::duration<double>(PClock::now() - a).count(); };
  const int read_threads = opts_.read_threads < 0 ? default_read_threads() : opts_.read_threads;
  if (read_threads > 0) preader = std::make_unique<ParallelRead>(read_threads);

  auto cleanup = [&] {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    blocks.cancel();
    cv.notify_all();
    if (reader.joinable()) reader.join();
    cudaStreamSynchronize(copy);
    cudaStreamSynchronize(compute);
    cudaGetLastError();
    for (auto& r : registered)
      if (r.second) cudaHostUnregister(r.second);
    for (Slot& s : R.slots) {
      s.staged = Staged();
      s.vocab_enqueued = false;
    }
  };

  try {
    SLUICE_CUDA(cudaMemsetAsync(R.d_rows_before, 0, sizeof(unsigned long long), compute));

    // ---- reader thread: blocks into staging buffers (or views of mapped files) --------------------
    reader = std::thread([&] {
      cudaSetDevice(opts_.device);
      for (;;) {
        BlockBuffer* buf = nullptr;
        {
          const auto pa = PClock::now();
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return !free_staging.empty() || stop; });
          p_wait_buf += p_since(pa);
          if (stop) return;
          buf = free_staging.front();
          free_staging.pop_front();
        }
        Staged st;
        st.buffer = buf;
        try {
          auto pa = PClock::now();
          if (!blocks.next(&st.block, buf)) st.end = true;
          p_next += p_since(pa);
          pa = PClock::now();
          if (!st.end && st.block.mapped && preader) {
            // Only the block's last page was touched (to find its last line end): the threads copy
            // the rest from the page cache.
            const MappedFile* m = blocks.mapping(st.block.file);
            // Read from the start of the block's first page: see ParallelRead::read_aligned.
            // Sized once for any block up to block_bytes: growing a page-locked buffer means
            // allocating another (tens of milliseconds per 64 MiB) and freeing this one, which waits
            // for the whole GPU.
            buf->reserve(std::max({block_bytes, blocks.block_bytes(), st.block.size}) + ParallelRead::kPage, 0);
            const size_t lead = preader->read_aligned(m->path(), uint64_t(st.block.data - m->data()),
                                                      st.block.size, buf->data());
            st.block.data = buf->data() + lead;
            st.block.mapped = false;
          }
          p_read += p_since(pa);
          // A mapped file is registered with the GPU (page-locked in place) when its first block is
          // read: here, off the thread that drives the GPU. A file that cannot be registered is
          // copied as pageable memory.
          bool known;
          {
            std::lock_guard<std::mutex> lk(mu);
            known = registered.count(st.block.file) > 0;
          }
          if (!st.end && st.block.mapped && !known) {
            const MappedFile* m = blocks.mapping(st.block.file);
            void* base = const_cast<char*>(m->data());
            void* got = nullptr;
            if (cudaHostRegister(base, m->size(), cudaHostRegisterReadOnly) == cudaSuccess) got = base;
            else cudaGetLastError();
            std::lock_guard<std::mutex> lk(mu);
            registered[st.block.file] = got;
          }
        } catch (...) {
          st.error = std::current_exception();
          st.end = true;
        }
        const bool end = st.end;
        {
          std::lock_guard<std::mutex> lk(mu);
          ready.push_back(std::move(st));
        }
        cv.notify_all();
        if (end) return;
      }
    });

    std::vector<uint64_t> line_base(blocks.files(), 0);
    std::deque<int> in_flight;  // slot indices, oldest first
    int next_slot = 0;
    bool input_done = false;
    std::exception_ptr read_error;
    uint64_t rows = 0;
    bool stopped = false;

    auto take_staged = [&](Staged* out) {
      const auto pa = PClock::now();
      struct Add { double& to; PClock::time_point a; ~Add() { to += std::chrono::duration<double>(PClock::now() - a).count(); } } add{p_take, pa};
      std::unique_lock<std::mutex> lk(mu);
      while (!cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !ready.empty(); })) {
        if (pending_interrupt()) {
          lk.unlock();
          check_interrupt();
        }
      }
      *out = std::move(ready.front());
      ready.pop_front();
    };
    auto give_back_staging = [&](BlockBuffer* b) {
      if (!b) return;
      {
        std::lock_guard<std::mutex> lk(mu);
        free_staging.push_back(b);
      }
      cv.notify_all();
    };

    // Stage 1: bytes to the GPU, the block pipeline, the row limit; the counts copied back.
    auto enqueue_parse = [&](int si, Staged&& st) {
      Slot& s = R.slots[si];
      const Block& b = st.block;
      const size_t need = std::max(block_bytes, b.size);
      if (!s.pipe || s.pipe->max_bytes() < need || s.pipe->clamped() != clamped || s.pipe->modulo() != opts_.max_ind_range) {
        s.pipe.reset();
        s.pipe = std::make_unique<BlockPipeline>(need, clamped, opts_.max_ind_range);
      }
      if (host_out && s.host_rows < s.pipe->max_rows()) {
        for (void* p : {static_cast<void*>(s.labels), static_cast<void*>(s.dense), static_cast<void*>(s.dense_int),
                        static_cast<void*>(s.sparse)})
          pinned_free(p);
        s.labels = nullptr;
        s.dense = nullptr;
        s.dense_int = nullptr;
        s.sparse = nullptr;
        s.host_rows = s.pipe->max_rows();
        s.labels = pinned_array<int32_t>(s.host_rows, "labels");
        s.dense = pinned_array<float>(s.host_rows * kNumDense, "dense values");
        s.dense_int = pinned_array<int32_t>(s.host_rows * kNumDense, "dense ints");
        s.sparse = pinned_array<uint32_t>(s.host_rows * kNumSparse, "categorical values");
      }
      // Bytes to the GPU: straight from a registered mapping (the reader thread registered it), or
      // from the staging buffer.
      if (b.size > 0) SLUICE_CUDA(cudaMemcpyAsync(s.pipe->device_bytes(), b.data, b.size, cudaMemcpyHostToDevice, copy));
      SLUICE_CUDA(cudaEventRecord(s.copied, copy));
      SLUICE_CUDA(cudaStreamWaitEvent(compute, s.copied, 0));
      s.pipe->enqueue(s.pipe->device_bytes(), b.size, b.format, compute);
      if (row_limit != kNoRowLimit) s.pipe->limit_rows(R.d_rows_before, row_limit, compute);
      SLUICE_CUDA(cudaMemcpyAsync(s.counts, s.pipe->device_counts(), sizeof(BlockCounts), cudaMemcpyDeviceToHost, compute));
      SLUICE_CUDA(cudaMemcpyAsync(s.bad, s.pipe->device_bad(), sizeof(BadLine) * cuda_detail::kMaxBadKept,
                                  cudaMemcpyDeviceToHost, compute));
      SLUICE_CUDA(cudaEventRecord(s.parsed, compute));
      s.staged = std::move(st);
      s.vocab_enqueued = false;
    };

    // Stage 2, once the block's row count is known on the host: the vocabulary step with the exact
    // number of rows (so the tables are sized by rows, not by bytes), and for prep the copy back.
    auto enqueue_vocab = [&](int si) {
      Slot& s = R.slots[si];
      const uint32_t good = s.counts->good;
      if ((first_seen || apply) && good > 0) {
        std::lock_guard<std::mutex> g(vocab_mu_);
        if (last_vocab_) SLUICE_CUDA(cudaStreamWaitEvent(compute, last_vocab_, 0));
        if (first_seen) {
          s.vocab_step = vocab_->assign_first_seen(s.pipe->out().sparse, s.pipe->device_good(), good, good, compute);
        } else {
          vocab_->apply_loaded(s.pipe->out().sparse, s.pipe->device_good(), good, compute);
        }
        if (!last_vocab_) SLUICE_CUDA(cudaEventCreateWithFlags(&last_vocab_, cudaEventDisableTiming));
        SLUICE_CUDA(cudaEventRecord(last_vocab_, compute));
        SLUICE_CUDA(cudaMemcpyAsync(s.entries, vocab_->device_entries(),
                                    sizeof(unsigned long long) * VocabTables::kEntriesWords, cudaMemcpyDeviceToHost, compute));
      }
      if (host_out && good > 0) {
        const auto& d = s.pipe->out();
        SLUICE_CUDA(cudaMemcpyAsync(s.labels, d.labels, size_t(good) * 4, cudaMemcpyDeviceToHost, compute));
        if (clamped) SLUICE_CUDA(cudaMemcpyAsync(s.dense_int, d.dense_int, size_t(good) * kNumDense * 4, cudaMemcpyDeviceToHost, compute));
        else SLUICE_CUDA(cudaMemcpyAsync(s.dense, d.dense, size_t(good) * kNumDense * 4, cudaMemcpyDeviceToHost, compute));
        SLUICE_CUDA(cudaMemcpyAsync(s.sparse, d.sparse, size_t(good) * kNumSparse * 4, cudaMemcpyDeviceToHost, compute));
      }
      SLUICE_CUDA(cudaEventRecord(s.done, compute));
      s.vocab_enqueued = true;
    };

    // Moves blocks into stage 2 in order: the oldest waits for its parse, later ones only if done.
    auto advance = [&]() {
      bool oldest = true;
      for (int si : in_flight) {
        Slot& s = R.slots[si];
        if (!s.vocab_enqueued) {
          if (oldest) {
            const auto pa = PClock::now();
            wait_event(s.parsed, "the GPU work of a block");
            p_parsed += p_since(pa);
          }
          else if (cudaEventQuery(s.parsed) != cudaSuccess) break;
          enqueue_vocab(si);
        }
        oldest = false;
      }
    };

    // Hands out the oldest block in flight; false when the sink (or the row limit) stops the run.
    auto deliver = [&]() -> bool {
      const int si = in_flight.front();
      in_flight.pop_front();
      Slot& s = R.slots[si];
      {
        const auto pa = PClock::now();
        wait_event(s.done, "the GPU work of a block");
        p_done += p_since(pa);
      }
      const Block b = s.staged.block;
      give_back_staging(s.staged.buffer);
      s.staged.buffer = nullptr;
      if (b.end_of_file) {
        // Every block of the file has been copied: its pages need not stay locked.
        void* base = nullptr;
        {
          std::lock_guard<std::mutex> lk(mu);
          auto it = registered.find(b.file);
          if (it != registered.end()) {
            base = it->second;
            it->second = nullptr;
          }
        }
        if (base) cudaHostUnregister(base);
      }
      const BlockCounts c = *s.counts;
      if (first_seen && c.good > 0) {
        std::lock_guard<std::mutex> g(vocab_mu_);
        vocab_->note_entries(s.entries, s.vocab_step);
      }
      uint64_t& base = line_base[b.file];
      if (c.bad > 0) {
        const std::string file = blocks.display_name(b.file);
        if (opts_.on_error == OnError::kFail) {
          const BadLine& x = s.bad[0];
          throw Error(file + ":" + std::to_string(base + x.line + 1) + ": " +
                      describe_bad_row(RowError(x.err), x.field));
        }
        stats.rows_skipped += c.bad;
        const uint32_t kept = std::min<uint32_t>(c.bad, uint32_t(cuda_detail::kMaxBadKept));
        for (uint32_t k = 0; k < kept && stats.bad_rows.size() < opts_.max_bad_rows_kept; ++k) {
          const BadLine& x = s.bad[k];
          stats.bad_rows.push_back({file, base + x.line + 1, describe_bad_row(RowError(x.err), x.field)});
        }
      }
      base += c.lines;
      ChunkView v;
      v.file_index = b.file;
      v.seq = b.seq;
      v.first_row = rows;
      v.rows = c.good;
      v.bytes = b.size;
      const auto& d = s.pipe->out();
      if (host_out) {
        v.labels = s.labels;
        v.dense = clamped ? nullptr : s.dense;
        v.dense_int = clamped ? s.dense_int : nullptr;
        v.sparse = s.sparse;
        v.memory = MemoryKind::kPinnedHost;
      } else {
        v.labels = d.labels;
        v.dense = clamped ? nullptr : d.dense;
        v.dense_int = clamped ? d.dense_int : nullptr;
        v.sparse = d.sparse;
        v.memory = MemoryKind::kDevice;
        v.device = opts_.device;
        v.stream = compute;
      }
      rows += c.good;
      stats.rows_per_file[b.file] += c.good;
      if (c.good > 0 && !sink(v)) return false;
      if (row_limit != kNoRowLimit && rows >= row_limit) return false;
      return true;
    };

    while (!stopped) {
      // Fill the pipeline.
      while (!input_done && int(in_flight.size()) < kSlots) {
        Staged st;
        take_staged(&st);
        if (st.end) {
          // A read error ends the input too: the blocks before it are handed out first.
          read_error = st.error;
          give_back_staging(st.buffer);
          input_done = true;
          break;
        }
        const int si = next_slot;
        next_slot = (next_slot + 1) % kSlots;
        enqueue_parse(si, std::move(st));
        in_flight.push_back(si);
      }
      if (in_flight.empty()) {
        if (read_error) std::rethrow_exception(read_error);
        break;
      }
      advance();
      if (!deliver()) {
        stopped = true;
        stats.stopped = true;
      }
    }
    stats.rows = rows;
    stats.bytes = blocks.bytes_read();
  } catch (...) {
    cleanup();
    release(std::move(res));
    throw;
  }
  cleanup();  // the reader thread has ended: its times can be read
  release(std::move(res));
  if (profile)
    std::fprintf(stderr,
                 "cuda engine: %.3f s; reader: waiting for a buffer %.3f, cutting %.3f, reading %.3f; "
                 "driver: waiting for the reader %.3f, for parses %.3f, for blocks done %.3f\n",
                 p_since(p_t0), p_wait_buf, p_next, p_read, p_take, p_parsed, p_done);
  return stats;
}

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& opts) { return std::make_unique<CudaEngine>(opts); }

}  // namespace sluice
