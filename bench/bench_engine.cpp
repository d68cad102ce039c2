// Engines side by side on one file in the page cache, first-seen vocabularies applied:
//   copy      the file to the GPU (registered mapping, page-locked copies): the PCIe ceiling
//   register  locking the file's pages for the GPU and unlocking them, alone (the rate is the file's
//             bytes over that time)
//   cpu       the cpu engine on every core, columns in host memory
//   cuda      the cuda engine, raw bytes -> columns in GPU memory (what training consumes): blocks read
//             into page-locked buffers by the default number of threads (EngineOptions::read_threads),
//             or the file's mapping registered with the GPU; then with the engine made (and its
//             buffers allocated) before the clock starts, with 4, 12 and 16 read threads
//   cuda-host the cuda engine with columns copied back to host memory (what prep writes)
//   kernels   the cuda engine's kernels alone, the bytes already in GPU memory
// Every rate is bytes of text per second; "x cpu" is against the cpu engine of the same run.
//
//   build/bench_engine --data FILE [--repeat R] [--block-mb M] [--modulo N]
//   build/bench_engine --rows N [--cardinality-scale F]        (generates the file first)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sluice/engine.hpp"
#include "sluice/gen.hpp"
#include "source/blocks.hpp"
#include "util/fs_ops.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include <cuda_runtime.h>

#include "engine/cuda/detail/block_pipeline.hpp"
#include "engine/cuda/detail/check.hpp"
#include "engine/cuda/detail/vocab_tables.hpp"
#endif

using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Result {
  std::string name;
  double seconds = 0;
  uint64_t rows = 0;
};

// Best of `repeat` runs of an engine over the file, each with a new engine (a fresh vocabulary). With
// `warm`, the engine's buffers are allocated by a first row before the clock starts: what a
// long-lived engine (training's) spends per file.
Result time_engine(const std::string& label, const std::string& engine, sluice::EngineOptions o,
                   const std::string& file, int repeat, bool warm = false) {
  Result r{label, 1e30, 0};
  for (int k = 0; k < repeat; ++k) {
    auto e = sluice::make_engine(engine, o);
    if (warm) {
      sluice::BlockReader first({file}, o.block_bytes);
      e->run(first, [](const sluice::ChunkView&) { return true; }, 1);
    }
    uint64_t rows = 0;
    const auto t0 = Clock::now();
    sluice::BlockReader blocks({file}, o.block_bytes);
    e->run(blocks, [&](const sluice::ChunkView& c) {
      rows += uint64_t(c.rows);
      return true;
    });
    const double s = secs_since(t0);
    if (s < r.seconds) r.seconds = s;
    r.rows = rows;
  }
  return r;
}

#if defined(SLUICE_HAVE_CUDA)
// The pinned copy ceiling: the whole file from its registered mapping to the GPU.
Result time_copy(const std::string& file, int repeat) {
  sluice::MappedFile m(file);
  void* dev = nullptr;
  SLUICE_CUDA(cudaMalloc(&dev, m.size()));
  const bool registered =
      cudaHostRegister(const_cast<char*>(m.data()), m.size(), cudaHostRegisterReadOnly) == cudaSuccess;
  if (!registered) cudaGetLastError();
  Result r{registered ? "copy (registered mapping)" : "copy (pageable)", 1e30, 0};
  for (int k = 0; k < repeat; ++k) {
    const auto t0 = Clock::now();
    SLUICE_CUDA(cudaMemcpy(dev, m.data(), m.size(), cudaMemcpyHostToDevice));
    r.seconds = std::min(r.seconds, secs_since(t0));
  }
  if (registered) cudaHostUnregister(const_cast<char*>(m.data()));
  cudaFree(dev);
  return r;
}

// Locking the file's pages for the GPU and unlocking them (what the cuda engine does once per file and
// run on its registered path), alone: the part of the engine's time that is neither copies nor kernels.
Result time_register(const std::string& file, int repeat) {
  sluice::MappedFile m(file);
  Result r{"register + unregister the file", 1e30, 0};
  for (int k = 0; k < repeat; ++k) {
    const auto t0 = Clock::now();
    if (cudaHostRegister(const_cast<char*>(m.data()), m.size(), cudaHostRegisterReadOnly) != cudaSuccess) {
      cudaGetLastError();
      r.name += " (failed)";
      break;
    }
    SLUICE_CUDA(cudaHostUnregister(const_cast<char*>(m.data())));
    r.seconds = std::min(r.seconds, secs_since(t0));
  }
  return r;
}

// The kernels alone: blocks already in GPU memory, one stream, first-seen ids; each stage timed with
// events. A host round trip per block reads its row count for the vocabulary step (as the engine does).
// `with_counts`: the vocabulary also counts each value's occurrences (prep writes them; training does not).
Result time_kernels(const std::string& file, size_t block_bytes, uint64_t modulo, bool with_counts, int repeat,
                    std::vector<std::pair<std::string, double>>* stage_ms) {
  using namespace sluice::cuda_detail;
  sluice::MappedFile m(file);
  std::vector<std::pair<size_t, size_t>> blocks;  // offset, size
  {
    sluice::BlockReader reader({file}, block_bytes);
    sluice::BlockBuffer buf;
    sluice::Block b;
    while (reader.next(&b, &buf)) {
      if (!b.mapped) throw sluice::Error("kernel benchmark needs a regular file");
      blocks.push_back({size_t(b.data - reader.mapping(0)->data()), b.size});
    }
  }
  char* dev = nullptr;
  SLUICE_CUDA(cudaMalloc(&dev, m.size() + 16));
  SLUICE_CUDA(cudaMemcpy(dev, m.data(), m.size(), cudaMemcpyHostToDevice));
  size_t largest = block_bytes;
  for (auto& b : blocks) largest = std::max(largest, b.second);
  cudaStream_t s;
  SLUICE_CUDA(cudaStreamCreate(&s));
  cudaEvent_t ev[6];
  for (auto& e : ev) SLUICE_CUDA(cudaEventCreate(&e));
  const char* names[5] = {"structural pass", "line pass", "value pass", "compaction", "vocabulary"};
  Result r{with_counts ? "kernels (bytes on the GPU)" : "kernels, vocabulary without counts", 1e30, 0};
  BlockPipeline pipe(largest, false, modulo);
  BlockCounts* counts = nullptr;
  unsigned long long* entries = nullptr;
  SLUICE_CUDA(cudaMallocHost(&counts, sizeof(BlockCounts)));
  SLUICE_CUDA(cudaMallocHost(&entries, sizeof(unsigned long long) * VocabTables::kEntriesWords));
  for (int k = 0; k < repeat; ++k) {
    VocabTables vocab(0, modulo, with_counts);
    double stage[5] = {0, 0, 0, 0, 0};
    uint64_t rows = 0;
    double total = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      SLUICE_CUDA(cudaEventRecord(ev[0], s));
      pipe.enqueue(dev + blocks[i].first, blocks[i].second, sluice::InputFormat::kTsv, s, ev + 1);
      SLUICE_CUDA(cudaMemcpyAsync(counts, pipe.device_counts(), sizeof(BlockCounts), cudaMemcpyDeviceToHost, s));
      SLUICE_CUDA(cudaStreamSynchronize(s));
      const uint32_t good = counts->good;
      SLUICE_CUDA(cudaEventRecord(ev[4], s));
      const uint64_t step = vocab.assign_first_seen(pipe.out().sparse, pipe.device_good(), good, good, s);
      SLUICE_CUDA(cudaEventRecord(ev[5], s));
      SLUICE_CUDA(cudaMemcpyAsync(entries, vocab.device_entries(), sizeof(unsigned long long) * VocabTables::kEntriesWords,
                                  cudaMemcpyDeviceToHost, s));
      SLUICE_CUDA(cudaStreamSynchronize(s));
      vocab.note_entries(entries, step);
      rows += good;
      float ms = 0;
      for (int st = 0; st < 4; ++st) {
        SLUICE_CUDA(cudaEventElapsedTime(&ms, ev[st], ev[st + 1]));
        stage[st] += ms;
        total += ms;
      }
      SLUICE_CUDA(cudaEventElapsedTime(&ms, ev[4], ev[5]));
      stage[4] += ms;
      total += ms;
    }
    const double secs = total / 1e3;  // GPU time of the stages (host round trips left out)
    if (secs < r.seconds) {
      r.seconds = secs;
      r.rows = rows;
      stage_ms->clear();
      for (int st = 0; st < 5; ++st) stage_ms->push_back({names[st], stage[st]});
    }
  }
  cudaFreeHost(counts);
  cudaFreeHost(entries);
  for (auto& e : ev) cudaEventDestroy(e);
  cudaStreamDestroy(s);
  cudaFree(dev);
  return r;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::string data;
  uint64_t rows = 4'000'000;
  double scale = 1.0;
  int repeat = 3;
  size_t block_mb = 0;
  uint64_t modulo = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--data") data = val();
    else if (a == "--rows") rows = std::stoull(val());
    else if (a == "--cardinality-scale") scale = std::stod(val());
    else if (a == "--repeat") repeat = std::stoi(val());
    else if (a == "--block-mb") block_mb = std::stoull(val());
    else if (a == "--modulo") modulo = std::stoull(val());
    else {
      std::fprintf(stderr, "usage: bench_engine [--data FILE | --rows N [--cardinality-scale F]] [--repeat R] [--block-mb M] [--modulo N]\n");
      return 2;
    }
  }
  try {
    std::string tmp;
    if (data.empty()) {
      tmp = (std::filesystem::temp_directory_path() / ("sluice-bench-engine-" + std::to_string(::getpid()))).string();
      sluice::GenOptions g;
      g.rows = rows;
      g.seed = 7;
      g.cardinality_scale = scale;
      g.out = tmp;
      g.sync = false;
      sluice::generate(g);
      data = tmp + "/day_0.tsv";
    }
    const double gb = double(std::filesystem::file_size(data)) / 1e9;
    sluice::EngineOptions o;
    o.ids = sluice::IdMode::kFirstSeen;
    o.max_ind_range = modulo;
    std::vector<Result> results;
    std::vector<std::pair<std::string, double>> stages, stages_train;
    // Warm the page cache (and the GPU) first.
    {
      sluice::MappedFile m(data);
      uint64_t sum = 0;
      for (size_t i = 0; i < m.size(); i += 4096) sum += uint8_t(m.data()[i]);
      if (sum == 1) std::fprintf(stderr, " ");  // keeps the reads
    }
    sluice::EngineOptions cpu = o;
    cpu.block_bytes = (block_mb ? block_mb : 4) << 20;
    results.push_back(time_engine("cpu engine, " + std::to_string(std::thread::hardware_concurrency()) + " threads", "cpu",
                                  cpu, data, repeat));
#if defined(SLUICE_HAVE_CUDA)
    std::string why;
    if (sluice::cuda_device_available(&why)) {
      results.push_back(time_copy(data, repeat));
      results.push_back(time_register(data, repeat));
      sluice::EngineOptions g = o;
      g.block_bytes = (block_mb ? block_mb : 64) << 20;
      g.output = sluice::MemoryKind::kDevice;
      const int auto_threads = sluice::default_read_threads();
      const std::string auto_name = std::to_string(auto_threads) + " read threads";
      results.push_back(time_engine("cuda engine -> GPU memory (" + auto_name + ")", "cuda", g, data, repeat));
      g.read_threads = 0;
      results.push_back(time_engine("  mapping registered instead", "cuda", g, data, repeat));
      g.read_threads = -1;
      results.push_back(time_engine("  made before the clock", "cuda", g, data, repeat, true));
      for (int t : {4, 12, 16}) {
        g.read_threads = t;
        results.push_back(time_engine("  made before, " + std::to_string(t) + " read threads", "cuda", g, data, repeat, true));
      }
      g.read_threads = 0;
      results.push_back(time_engine("  made before, mapping registered", "cuda", g, data, repeat, true));
      g.read_threads = -1;
      g.output = sluice::MemoryKind::kHost;
      results.push_back(time_engine("cuda engine -> host memory (" + auto_name + ")", "cuda", g, data, repeat));
      g.read_threads = 0;
      results.push_back(time_engine("  mapping registered instead", "cuda", g, data, repeat));
      g.read_threads = -1;
      results.push_back(time_kernels(data, g.block_bytes, modulo, true, repeat, &stages));
      results.push_back(time_kernels(data, g.block_bytes, modulo, false, repeat, &stages_train));
    } else {
      std::fprintf(stderr, "cuda: %s\n", why.c_str());
    }
#endif
    const double cpu_rate = gb / results[0].seconds;
    std::printf("input: %s, %.3f GB, %llu rows; first-seen vocabularies%s\n", data.c_str(), gb,
                (unsigned long long)results[0].rows, modulo ? (", modulo " + std::to_string(modulo)).c_str() : "");
    std::printf("%-34s %10s %10s %10s\n", "", "GB/s", "M rows/s", "x cpu");
    for (const auto& r : results) {
      const double rate = gb / r.seconds;
      std::printf("%-34s %10.2f %10.2f %10.2f\n", r.name.c_str(), rate,
                  r.rows ? double(r.rows) / r.seconds / 1e6 : 0.0, rate / cpu_rate);
    }
    for (const auto& st : stages)
      std::printf("  kernel stage %-22s %8.1f ms (%.2f GB/s)\n", st.first.c_str(), st.second, gb / (st.second / 1e3));
    for (const auto& st : stages_train)
      std::printf("  kernel stage (no counts) %-22s %8.1f ms (%.2f GB/s)\n", st.first.c_str(), st.second,
                  gb / (st.second / 1e3));
    if (!tmp.empty()) sluice::fsops::remove_tree(tmp);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
  return 0;
}
