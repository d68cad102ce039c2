// Inflate rate of each inflater built in (zlib always, ISA-L's igzip with SLUICE_HAVE_ISAL) on one
// gzip file, one core each: GB/s of decompressed output, best of R.
//   memory: the whole compressed file in memory, inflated member by member into a 4 MiB buffer
//           (the inflater alone);
//   source: the byte source reading the file (page cache) in 4 MiB reads, as the BlockReader does.
// Then the first file through its restart-point index (source/gzip_index.hpp): the index built (one
// zlib pass, timed), then the file read with 1, 2, 4, ... threads inflating its ranges, each inflater,
// against that inflater's serial source rate above.
// Then the same file without an index: the index built from guessed block boundaries on 2, 4, ...
// threads, and the first read decoded that way on every core.
// Then, over all the files given, the BlockReader's blocks (4 MiB) with 1, 2, ... files inflating at
// once (BlockReader's inflate_ahead), up to the number of files or of cores, holding at most
// BlockReader::default_ahead_bytes() of inflated bytes or the --ahead-mb given: GB/s of blocks.
//
//   build/bench_inflate FILE.gz [MORE.gz ...] [--repeat R] [--ahead-mb M]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <thread>

#include "sluice/source.hpp"
#include "source/blocks.hpp"
#include "source/gzip_index.hpp"
#include "source/inflate.hpp"
#include "source/speculative_gzip.hpp"

using Clock = std::chrono::steady_clock;
using namespace sluice;

namespace {

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr size_t kOut = size_t{4} << 20;

// Inflates every member of `gz` (no checks between members beyond the inflater's own); returns the
// decompressed size.
uint64_t inflate_memory(Inflater& inf, const std::string& gz, std::vector<char>& out) {
  const auto* in = reinterpret_cast<const uint8_t*>(gz.data());
  size_t pos = 0;
  uint64_t total = 0;
  while (pos < gz.size()) {
    inf.reset();
    for (;;) {
      size_t used = 0, made = 0;
      const Inflater::Status st =
          inf.step(in + pos, gz.size() - pos, reinterpret_cast<uint8_t*>(out.data()), out.size(), &used, &made);
      pos += used;
      total += made;
      if (st == Inflater::Status::kMemberEnd) break;
      if (st == Inflater::Status::kError) throw Error("corrupt gzip data: " + inf.error());
      if (used == 0 && made == 0) throw Error("truncated gzip data");
    }
  }
  return total;
}

uint64_t inflate_source(const std::string& path, InflaterKind kind, std::vector<char>& out) {
  auto src = open_byte_source(path, kind);
  uint64_t total = 0;
  for (size_t n; (n = src->read(out.data(), out.size())) > 0;) total += n;
  return total;
}

uint64_t read_blocks(const std::vector<std::string>& paths, size_t ahead, size_t ahead_bytes) {
  BlockReader r(paths, size_t{4} << 20, true, ahead, ahead_bytes);
  BlockBuffer buf;
  Block b;
  uint64_t total = 0;
  while (r.next(&b, &buf)) total += b.size;
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  int repeat = 3;
  size_t ahead_bytes = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--ahead-mb") && i + 1 < argc) ahead_bytes = size_t(std::atof(argv[++i]) * (1 << 20));
    else if (argv[i][0] != '-') paths.push_back(argv[i]);
    else paths.clear(), i = argc;
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: bench_inflate FILE.gz [MORE.gz ...] [--repeat R] [--ahead-mb M]\n");
    return 2;
  }
  const std::string path = paths[0];
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string gz = ss.str();
  std::vector<char> out(kOut);
  try {
    std::vector<InflaterKind> kinds{InflaterKind::kZlib};
    if (inflater_available(InflaterKind::kIsal)) kinds.push_back(InflaterKind::kIsal);
    std::printf("%s: %.1f MB compressed, byte sources use %s\n", path.c_str(), gz.size() / 1e6, gzip_inflater().c_str());
    double zlib_mem = 0, zlib_src = 0;
    std::vector<double> serial_src;
    for (InflaterKind k : kinds) {
      auto inf = make_inflater(k);
      double best_mem = 1e30, best_src = 1e30;
      uint64_t n = 0;
      for (int r = 0; r < repeat; ++r) {
        auto t0 = Clock::now();
        n = inflate_memory(*inf, gz, out);
        best_mem = std::min(best_mem, secs_since(t0));
        t0 = Clock::now();
        const uint64_t m = inflate_source(path, k, out);
        best_src = std::min(best_src, secs_since(t0));
        if (m != n) throw Error("the byte source and the inflater disagree on the size");
      }
      const double mem = n / best_mem / 1e9, src = n / best_src / 1e9;
      if (k == InflaterKind::kZlib) zlib_mem = mem, zlib_src = src;
      serial_src.push_back(src);
      std::printf("%-22s %.1f MB out  memory %.3f GB/s (x%.2f)  source %.3f GB/s (x%.2f)\n", inflater_name(k).c_str(),
                  n / 1e6, mem, mem / zlib_mem, src, src / zlib_src);
    }
    {
      const auto t0 = Clock::now();
      std::shared_ptr<const GzipIndex> ix = std::make_shared<GzipIndex>(build_gzip_index(path));
      const double build = secs_since(t0);
      std::printf("index: %zu ranges of about %.1f MiB, built in %.2f s (%.3f GB/s of output)\n", ix->points.size(),
                  ix->span / double(1 << 20), build, ix->total_out / build / 1e9);
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      for (size_t ki = 0; ki < kinds.size(); ++ki)
        for (int threads = 1; threads <= cores; threads *= 2) {
          double best = 1e30;
          uint64_t n = 0;
          for (int r = 0; r < repeat; ++r) {
            const auto t1 = Clock::now();
            auto src = open_indexed_gzip(path, ix, threads, kinds[ki]);
            n = 0;
            for (size_t got; (got = src->read(out.data(), out.size())) > 0;) n += got;
            best = std::min(best, secs_since(t1));
          }
          if (n != ix->total_out) throw Error("the indexed read and the index disagree on the size");
          const double rate = n / best / 1e9;
          std::printf("indexed, %-22s %2d threads: %.3f GB/s (x%.2f its serial source)\n", inflater_name(kinds[ki]).c_str(),
                      threads, rate, rate / serial_src[ki]);
        }
    }
    {
      // Without an index: the index built from guessed block boundaries on 2, 4, ... threads, and
      // the first read decoded that way on every core (source/speculative_gzip.hpp).
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      for (int threads = 2; threads <= cores; threads *= 2) {
        double best = 1e30;
        ParallelIndexStats st;
        uint64_t n = 0;
        for (int r = 0; r < repeat; ++r) {
          const auto t0 = Clock::now();
          n = build_gzip_index_parallel(path, 0, threads, nullptr, &st).total_out;
          best = std::min(best, secs_since(t0));
        }
        std::printf("index from guessed boundaries, %2d threads: %.2f s (%.3f GB/s of output), %zu ranges, %zu of %zu guesses right%s\n",
                    threads, best, n / best / 1e9, st.ranges, st.confirmed, st.guessed, st.serial ? " (serial pass)" : "");
      }
      double best = 1e30;
      uint64_t n = 0;
      for (int r = 0; r < repeat; ++r) {
        const auto t0 = Clock::now();
        auto src = open_speculative_gzip(path, take_gzip_turn(), cores, false);
        n = 0;
        for (size_t got; (got = src->read(out.data(), out.size())) > 0;) n += got;
        best = std::min(best, secs_since(t0));
      }
      const double rate = n / best / 1e9;
      std::printf("first read from guessed boundaries, %d threads: %.3f GB/s (x%.2f the serial source of %s)\n", cores, rate,
                  rate / serial_src.back(), inflater_name(kinds.back()).c_str());
    }
    const size_t most = std::min<size_t>(paths.size(), std::max(1u, std::thread::hardware_concurrency()));
    double one = 0;
    for (size_t ahead = 1; ahead <= most && paths.size() > 1; ++ahead) {
      double best = 1e30;
      uint64_t n = 0;
      for (int r = 0; r < repeat; ++r) {
        const auto t0 = Clock::now();
        n = read_blocks(paths, ahead, ahead_bytes);
        best = std::min(best, secs_since(t0));
      }
      const double rate = n / best / 1e9;
      if (ahead == 1) one = rate;
      std::printf("blocks of %zu files, %zu inflating at once, %.0f MiB ahead: %.1f MB in %.2f s, %.3f GB/s (x%.2f)\n",
                  paths.size(), ahead, (ahead_bytes ? ahead_bytes : BlockReader::default_ahead_bytes()) / double(1 << 20), n / 1e6,
                  best, rate, rate / one);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_inflate: %s\n", e.what());
    return 1;
  }
  return 0;
}
