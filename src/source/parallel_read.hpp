// Reads a range of a file into memory with several threads at once (pread(2) of disjoint pieces).
// One thread copies from the page cache at about 5 GB/s; the cuda engine's blocks need several to
// keep a GPU's copy engines busy without registering the file's pages with the GPU (which holds the
// driver's lock while it runs).
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

 private:
  detail::ParallelFor pool_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace sluice
