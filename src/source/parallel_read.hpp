// Reads a range of a file into memory with several threads at once (pread(2) of disjoint pieces).
// One thread copies from the page cache at about 5 GB/s; the cuda engine's blocks need several to
// keep a GPU's copy engines busy without registering the file's pages with the GPU (which holds the
// driver's lock while it runs: other threads' copies and launches wait for it).
//
// read_aligned() starts at the page holding `offset`, so that every piece is page-aligned in the file
// and in a page-aligned buffer. On the H100 host that measured the same as reading from mid-page
// (bench/bench_read_path: 8 threads 27-37 GB/s either way); the cuda engine reads its blocks so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/parallel.hpp"

namespace sluice {

class ParallelRead {
 public:
  // threads >= 1: the calling thread and threads - 1 workers.
  explicit ParallelRead(int threads);
  ~ParallelRead();
  ParallelRead(const ParallelRead&) = delete;
  ParallelRead& operator=(const ParallelRead&) = delete;

  int threads() const { return pool_.threads(); }
  // Bytes [offset, offset + n) of the file at `path` into dst. The file stays open for the next call
  // with the same path. Throws sluice::Error naming the file when it cannot be read or ends before
  // offset + n (a file truncated while it is read).
  void read(const std::string& path, uint64_t offset, size_t n, char* dst);
  // The same for bytes [offset - lead, offset + n), where lead = offset % kPage: dst (page-aligned for
  // speed) must hold n + lead bytes; the range's first byte lands at dst + lead, which is returned.
  static constexpr size_t kPage = 4096;
  size_t read_aligned(const std::string& path, uint64_t offset, size_t n, char* dst);

 private:
  detail::ParallelFor pool_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace sluice
