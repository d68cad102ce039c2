// The one read-only memory map of a whole file (datasets, spill files, mapped inputs).
#pragma once

#include <cstddef>
#include <string>

namespace sluice {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps all of `path` read-only; throws sluice::Error naming the file. An empty file maps to nothing
  // (data() == nullptr, size() == 0).
  explicit MappedFile(const std::string& path, bool sequential = false);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return static_cast<const char*>(data_); }
  template <class T>
  const T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<const T*>(data() + byte_offset);
  }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Unmaps the whole pages before byte `offset` now (a reader done with them), so that tearing the
  // mapping down is spread over the reading instead of all falling at the end (about 0.05 s for a
  // 1 GB file). data() stays where the mapping began; the released bytes must not be read again.
  // Never maps anything back; not thread-safe against itself.
  void release_before(size_t offset);
  size_t released() const { return released_; }

 private:
  void unmap();
  std::string path_;
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t released_ = 0;  // bytes at the start already unmapped (whole pages)
};

}  // namespace sluice
