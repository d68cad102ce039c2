// The generator's output directory and files. Private to src/gen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice::gen_detail {

// A file written with plain write(2) calls; errors throw sluice::Error naming the file. With
// `sync`, write-back is started every few tens of MB and close() waits for it (fsync).
class OutFile {
 public:
  OutFile(const std::string& path, bool sync);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  void write(const char* data, size_t n);
  void close();  // with sync, flushes to the disk (fsync); closes

 private:
  std::string path_;
  int fd_ = -1;
  bool sync_;
  uint64_t written_ = 0, synced_ = 0;
};

void write_whole_file(const std::string& path, const std::string& contents, bool sync);

}  // namespace sluice::gen_detail
