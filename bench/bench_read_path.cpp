// Ways of getting a file's bytes from the page cache into GPU memory, each alone, on one file:
//   pread T      T threads read 64 MiB blocks into page-locked buffers (no GPU): the host's copy rate
//   pread+copy T the same, each block then copied to the GPU on the reading thread's stream
//   ParallelRead the engine's reader: one block at a time, split over T threads
//   register     page-locking the mapping for the GPU: the whole file at once, or in regions by T threads
//   reg+copy T   regions registered ahead by T threads, copied to the GPU as they are ready, unlocked
//                once copied (at most `window` regions locked at a time)
//   launch stall the longest time a small copy's enqueue took while other threads registered regions
// Rates are the file's bytes over the wall time.
//
//   build/bench_read_path --data FILE [--repeat R]
//   build/bench_read_path --rows N                       (generates the file first)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/source.hpp"
#include "sluice/gen.hpp"
#include "source/parallel_read.hpp"
#include "util/fs_ops.hpp"
#include "util/mapped_file.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include <cuda_runtime.h>

#include "engine/cuda/detail/check.hpp"
#endif

using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr size_t kBlock = size_t{64} << 20;

#if defined(SLUICE_HAVE_CUDA)

struct Pinned {
  char* p = nullptr;
  explicit Pinned(size_t n) { SLUICE_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&p), n, cudaHostAllocPortable)); }
  ~Pinned() { cudaFreeHost(p); }
};

void pread_all(int fd, char* dst, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd, dst + done, n - done, off_t(off + done));
    if (got <= 0) throw sluice::Error("pread failed");
    done += size_t(got);
  }
}

// T threads, each reading whole blocks (taken in turn from a shared counter) into its own two
// page-locked buffers, each block then copied to the GPU on the reading thread's stream. Buffers,
// streams and events are made before the clock starts.
double time_pread_copy(const std::string& file, size_t size, int threads, char* dev) {
  struct Lane {
    std::unique_ptr<Pinned> buf[2];
    cudaEvent_t done[2] = {nullptr, nullptr};
    cudaStream_t s = nullptr;
  };
  std::vector<Lane> lanes(threads);
  for (Lane& l : lanes) {
    SLUICE_CUDA(cudaStreamCreateWithFlags(&l.s, cudaStreamNonBlocking));
    for (int i = 0; i < 2; ++i) {
      l.buf[i] = std::make_unique<Pinned>(kBlock);
      SLUICE_CUDA(cudaEventCreateWithFlags(&l.done[i], cudaEventDisableTiming | cudaEventBlockingSync));
    }
  }
  const int fd = ::open(file.c_str(), O_RDONLY);
  const size_t blocks = (size + kBlock - 1) / kBlock;
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      Lane& l = lanes[t];
      int i = 0;
      bool used[2] = {false, false};
      for (;;) {
        const size_t k = next.fetch_add(1);
        if (k >= blocks) break;
        const size_t off = k * kBlock, n = std::min(kBlock, size - off);
        if (used[i]) SLUICE_CUDA(cudaEventSynchronize(l.done[i]));
        pread_all(fd, l.buf[i]->p, n, off);
        SLUICE_CUDA(cudaMemcpyAsync(dev + off, l.buf[i]->p, n, cudaMemcpyHostToDevice, l.s));
        SLUICE_CUDA(cudaEventRecord(l.done[i], l.s));
        used[i] = true;
        i ^= 1;
      }
      SLUICE_CUDA(cudaStreamSynchronize(l.s));
    });
  }
  for (auto& t : ts) t.join();
  const double sec = secs_since(t0);
  ::close(fd);
  for (Lane& l : lanes) {
    for (auto e : l.done) cudaEventDestroy(e);
    cudaStreamDestroy(l.s);
  }
  return sec;
}

// The engine's shape: one reader splits each block over T threads (ParallelRead) into a ring of
// `ring` page-locked buffers; the calling thread copies each to the GPU on one stream, reusing a buffer
// once its copy has completed.
double time_ring_copy(const std::string& file, size_t size, int threads, int ring, char* dev) {
  std::vector<std::unique_ptr<Pinned>> bufs;
  std::vector<cudaEvent_t> done(ring);
  for (int i = 0; i < ring; ++i) {
    bufs.push_back(std::make_unique<Pinned>(kBlock));
    SLUICE_CUDA(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming | cudaEventBlockingSync));
  }
  cudaStream_t s;
  SLUICE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  sluice::ParallelRead r(threads);
  const auto t0 = Clock::now();
  size_t k = 0;
  for (size_t off = 0; off < size; off += kBlock, ++k) {
    const int i = int(k % size_t(ring));
    if (k >= size_t(ring)) SLUICE_CUDA(cudaEventSynchronize(done[i]));
    const size_t n = std::min(kBlock, size - off);
    r.read(file, off, n, bufs[i]->p);
    SLUICE_CUDA(cudaMemcpyAsync(dev + off, bufs[i]->p, n, cudaMemcpyHostToDevice, s));
    SLUICE_CUDA(cudaEventRecord(done[i], s));
  }
  SLUICE_CUDA(cudaStreamSynchronize(s));
  const double sec = secs_since(t0);
  for (auto e : done) cudaEventDestroy(e);
  cudaStreamDestroy(s);
  return sec;
}

// Allocating page-locked memory (what a run's staging buffers cost when they are made): with
// cudaHostAlloc, or as anonymous memory (2 MiB-aligned, transparent huge pages asked for or not),
// touched, then registered with the GPU. Returns {allocate s, free s}.
std::pair<double, double> time_pinned_alloc(size_t bytes, int how) {
  const auto t0 = Clock::now();
  void* p = nullptr;
  if (how == 0) {
    SLUICE_CUDA(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  } else {
    p = std::aligned_alloc(size_t{2} << 20, bytes);
    if (how == 2) ::madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 0, bytes);
    SLUICE_CUDA(cudaHostRegister(p, bytes, cudaHostRegisterPortable));
  }
  const double a = secs_since(t0);
  const auto t1 = Clock::now();
  if (how == 0) {
    cudaFreeHost(p);
  } else {
    cudaHostUnregister(p);
    std::free(p);
  }
  return {a, secs_since(t1)};
}

// Whole buffers allocated before the clock starts, so only the reads are timed.
double time_pread_only(const std::string& file, size_t size, int threads) {
  std::vector<std::unique_ptr<Pinned>> bufs;
  for (int t = 0; t < threads; ++t) bufs.push_back(std::make_unique<Pinned>(kBlock));
  const int fd = ::open(file.c_str(), O_RDONLY);
  const size_t blocks = (size + kBlock - 1) / kBlock;
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (;;) {
        const size_t k = next.fetch_add(1);
        if (k >= blocks) break;
        const size_t off = k * kBlock;
        pread_all(fd, bufs[t]->p, std::min(kBlock, size - off), off);
      }
    });
  }
  for (auto& t : ts) t.join();
  const double sec = secs_since(t0);
  ::close(fd);
  return sec;
}

// `skew`: every block starts that many bytes into a page of the file (the engine's blocks end at
// line ends), read to a page-aligned buffer as it is, or from the start of its page (read_aligned).
double time_parallel_read(const std::string& file, size_t size, int threads, size_t skew, bool aligned) {
  Pinned buf(kBlock + 4096);
  sluice::ParallelRead r(threads);
  const auto t0 = Clock::now();
  for (size_t off = skew; off < size; off += kBlock) {
    const size_t n = std::min(kBlock, size - off);
    if (aligned) r.read_aligned(file, off, n, buf.p);
    else r.read(file, off, n, buf.p);
  }
  return secs_since(t0);
}

// Regions of `region` bytes registered by `threads` threads; returns {register s, unregister s}.
std::pair<double, double> time_register_regions(const sluice::MappedFile& m, size_t region, int threads) {
  char* base = const_cast<char*>(m.data());
  const size_t n = (m.size() + region - 1) / region;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto each = [&](auto fn) {
    next = 0;
    std::vector<std::thread> ts;
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&] {
        for (;;) {
          const size_t k = next.fetch_add(1);
          if (k >= n) break;
          const size_t off = k * region;
          if (fn(base + off, std::min(region, m.size() - off)) != cudaSuccess) failed = true;
        }
      });
    }
    for (auto& t : ts) t.join();
    return secs_since(t0);
  };
  const double reg = each([](char* p, size_t len) { return cudaHostRegister(p, len, cudaHostRegisterReadOnly); });
  const double unreg = each([](char* p, size_t) { return cudaHostUnregister(p); });
  if (failed) {
    cudaGetLastError();
    return {-1, -1};
  }
  return {reg, unreg};
}

// Regions registered ahead by `threads` threads (at most `window` locked), each copied to the GPU as
// soon as it is registered, then unlocked by the registering threads once its copy has completed.
double time_register_copy(const sluice::MappedFile& m, size_t region, int threads, size_t window, char* dev) {
  char* base = const_cast<char*>(m.data());
  const size_t n = (m.size() + region - 1) / region;
  std::vector<std::atomic<int>> state(n);  // 0 none, 1 registered, 2 copy enqueued
  for (auto& s : state) s = 0;
  std::vector<cudaEvent_t> copied(n);
  for (auto& e : copied) SLUICE_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  std::atomic<size_t> next_reg{0}, unlocked{0};
  std::atomic<bool> failed{false};
  cudaStream_t s;
  SLUICE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::mutex unlock_mu;
  size_t next_unlock = 0;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (;;) {
        // Unlock what has been copied, in order.
        {
          std::lock_guard<std::mutex> g(unlock_mu);
          while (next_unlock < n && state[next_unlock] == 2 && cudaEventQuery(copied[next_unlock]) == cudaSuccess) {
            cudaHostUnregister(base + next_unlock * region);
            ++next_unlock;
            ++unlocked;
          }
        }
        if (next_reg.load() >= n) {
          if (unlocked.load() >= n) break;
          std::this_thread::sleep_for(std::chrono::microseconds(50));
          continue;
        }
        if (next_reg.load() >= unlocked.load() + window) {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
          continue;
        }
        const size_t k = next_reg.fetch_add(1);
        if (k >= n) continue;
        const size_t off = k * region;
        if (cudaHostRegister(base + off, std::min(region, m.size() - off), cudaHostRegisterReadOnly) != cudaSuccess)
          failed = true;
        state[k] = 1;
      }
    });
  }
  // The copying thread: regions in order, as they become registered.
  for (size_t k = 0; k < n; ++k) {
    while (state[k].load() != 1) std::this_thread::yield();
    const size_t off = k * region;
    SLUICE_CUDA(cudaMemcpyAsync(dev + off, base + off, std::min(region, m.size() - off), cudaMemcpyHostToDevice, s));
    SLUICE_CUDA(cudaEventRecord(copied[k], s));
    state[k] = 2;
  }
  for (auto& t : ts) t.join();
  SLUICE_CUDA(cudaStreamSynchronize(s));
  const double sec = secs_since(t0);
  for (auto& e : copied) cudaEventDestroy(e);
  cudaStreamDestroy(s);
  if (failed) {
    cudaGetLastError();
    return -1;
  }
  return sec;
}

// The longest enqueue of a small copy while `threads` threads register and unregister 64 MiB regions.
double launch_stall_ms(const sluice::MappedFile& m, int threads) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  char* base = const_cast<char*>(m.data());
  const size_t region = kBlock, n = m.size() / region;
  std::atomic<size_t> next{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      while (!stop) {
        const size_t k = next.fetch_add(1) % n;
        if (cudaHostRegister(base + k * region, region, cudaHostRegisterReadOnly) == cudaSuccess)
          cudaHostUnregister(base + k * region);
        else
          cudaGetLastError();
      }
    });
  }
  Pinned src(4096);
  char* dev = nullptr;
  SLUICE_CUDA(cudaMalloc(&dev, 4096));
  cudaStream_t s;
  SLUICE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  double worst = 0;
  const auto t0 = Clock::now();
  while (secs_since(t0) < 0.5) {
    const auto a = Clock::now();
    SLUICE_CUDA(cudaMemcpyAsync(dev, src.p, 4096, cudaMemcpyHostToDevice, s));
    worst = std::max(worst, secs_since(a));
    SLUICE_CUDA(cudaStreamSynchronize(s));
  }
  stop = true;
  for (auto& t : ts) t.join();
  cudaStreamDestroy(s);
  cudaFree(dev);
  return worst * 1e3;
}

#endif

}  // namespace

int main(int argc, char** argv) {
  std::string data;
  uint64_t rows = 16000000;
  int repeat = 2;
  std::string only;  // "alloc": only the page-locked allocations
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "usage: bench_read_path [--data FILE | --rows N] [--repeat R] [--only alloc]\n");
      return 2;
    }
    if (a == "--data") data = argv[++i];
    else if (a == "--rows") rows = std::stoull(argv[++i]);
    else if (a == "--repeat") repeat = std::stoi(argv[++i]);
    else if (a == "--only") only = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_read_path [--data FILE | --rows N] [--repeat R] [--only alloc]\n");
      return 2;
    }
  }
#if !defined(SLUICE_HAVE_CUDA)
  (void)repeat;
  std::fprintf(stderr, "bench_read_path: built without CUDA\n");
  return 1;
#else
  try {
    if (only == "alloc") {
      for (int how : {0, 1, 2, 0, 1, 2}) {
        const auto t = time_pinned_alloc(size_t{256} << 20, how);
        std::printf("page-locked 256 MiB, %-28s allocate %.1f ms, free %.1f ms\n",
                    how == 0 ? "cudaHostAlloc" : how == 1 ? "touched + registered" : "huge pages + registered",
                    1e3 * t.first, 1e3 * t.second);
      }
      return 0;
    }
    std::string tmp;
    if (data.empty()) {
      tmp = (std::filesystem::temp_directory_path() / ("sluice-bench-read-" + std::to_string(::getpid()))).string();
      sluice::GenOptions g;
      g.rows = rows;
      g.seed = 7;
      g.out = tmp;
      g.sync = false;
      sluice::generate(g);
      data = tmp + "/day_0.tsv";
    }
    sluice::MappedFile m(data);
    const double gb = double(m.size()) / 1e9;
    {
      uint64_t sum = 0;
      for (size_t i = 0; i < m.size(); i += 4096) sum += uint8_t(m.data()[i]);
      if (sum == 1) std::fprintf(stderr, " ");
    }
    char* dev = nullptr;
    SLUICE_CUDA(cudaMalloc(&dev, m.size()));
    auto best = [&](auto fn) {
      double b = 1e30;
      for (int k = 0; k < repeat; ++k) b = std::min(b, fn());
      return b;
    };
    std::printf("input: %s, %.3f GB; rates in GB/s of the file\n", data.c_str(), gb);
    for (int t : {8, 16})
      std::printf("pread %2d threads                    %8.2f\n", t,
                  gb / best([&] { return time_pread_only(data, m.size(), t); }));
    for (int t : {8})
      std::printf("pread+copy %2d threads               %8.2f\n", t,
                  gb / best([&] { return time_pread_copy(data, m.size(), t, dev); }));
    for (int t : {4, 8, 16})
      for (int ring : {4})
        std::printf("ParallelRead %2d + copy, ring of %d   %8.2f\n", t, ring,
                    gb / best([&] { return time_ring_copy(data, m.size(), t, ring, dev); }));
    for (int how : {0, 1, 2, 0, 1, 2}) {
      const auto t = time_pinned_alloc(size_t{256} << 20, how);
      std::printf("page-locked 256 MiB, %-28s allocate %.1f ms, free %.1f ms\n",
                  how == 0 ? "cudaHostAlloc" : how == 1 ? "touched + registered" : "huge pages + registered",
                  1e3 * t.first, 1e3 * t.second);
    }
    for (int t : {4, 8, 16}) {
      std::printf("ParallelRead %2d threads             %8.2f\n", t,
                  gb / best([&] { return time_parallel_read(data, m.size(), t, 0, false); }));
      std::printf("  blocks 1000 bytes into a page     %8.2f\n",
                  gb / best([&] { return time_parallel_read(data, m.size(), t, 1000, false); }));
      std::printf("  the same, read_aligned            %8.2f\n",
                  gb / best([&] { return time_parallel_read(data, m.size(), t, 1000, true); }));
    }
    {
      const auto t0 = Clock::now();
      SLUICE_CUDA(cudaHostRegister(const_cast<char*>(m.data()), m.size(), cudaHostRegisterReadOnly));
      const double r = secs_since(t0);
      const auto t1 = Clock::now();
      SLUICE_CUDA(cudaMemcpy(dev, m.data(), m.size(), cudaMemcpyHostToDevice));
      const double c = secs_since(t1);
      const auto t2 = Clock::now();
      SLUICE_CUDA(cudaHostUnregister(const_cast<char*>(m.data())));
      const double u = secs_since(t2);
      std::printf("register whole file                 %8.2f  (unregister %.2f, copy %.2f)\n", gb / r, gb / u, gb / c);
    }
    for (size_t region_mb : {64}) {
      for (int t : {1, 4}) {
        const auto ru = time_register_regions(m, region_mb << 20, t);
        std::printf("register %3zu MiB regions, %d threads  %8.2f  (unregister %.2f)\n", region_mb, t, gb / ru.first,
                    gb / ru.second);
      }
    }
    for (size_t region_mb : {64}) {
      for (int t : {1}) {
        const double s = best([&] { return time_register_copy(m, region_mb << 20, t, 16, dev); });
        std::printf("reg+copy %3zu MiB regions, %d threads  %8.2f\n", region_mb, t, gb / s);
      }
    }
    for (int t : {0, 1})
      std::printf("copy enqueue, %d threads registering: worst %.2f ms\n", t, launch_stall_ms(m, t));
    cudaFree(dev);
    if (!tmp.empty()) sluice::fsops::remove_tree(tmp);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_read_path: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
