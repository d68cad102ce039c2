// The one file writer: every output file of sluice (npy columns, Meta binary rows, generated TSV,
// manifests, vocabularies, checkpoints) is written through FileWriter, whose system calls go through
// util/sys_io.hpp (and so can be made to fail by the tests' fault injection).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

class FileWriter {
 public:
  struct Options {
    size_t buffer_bytes = size_t(1) << 20;  // writes are gathered into blocks of this size
    bool exclusive = false;                 // fail if the file exists (O_EXCL)
    // Start write-back every this many bytes (sync_file_range), so that the final fsync does not
    // wait for the whole file; 0 = never.
    uint64_t writeback_every = 0;
  };
  explicit FileWriter(std::string path) : FileWriter(std::move(path), Options()) {}
  FileWriter(std::string path, Options opts);
  ~FileWriter();  // closes without syncing when close() was not called; never throws
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void write(const void* data, size_t n);
  // Overwrites bytes already written (a header fixed up at the end); flushes the buffer first.
  void write_at(uint64_t offset, const void* data, size_t n);
  void flush();
  // Flushes, fsyncs (when `sync`) and closes; throws naming the file. The writer is closed even
  // when it throws.
  void close(bool sync = true);
  // Takes the descriptor's advisory lock (flock) so that other processes can tell the file's
  // writer is alive; released when the file is closed.
  void lock();

  uint64_t size() const { return written_ + buf_.size(); }
  const std::string& path() const { return path_; }
  bool is_open() const { return fd_ >= 0; }

 private:
  void drain();
  std::string path_;
  Options opts_;
  int fd_ = -1;
  std::vector<char> buf_;
  uint64_t written_ = 0, synced_ = 0;
};

// A file that appears at `path` complete or not at all: written to a hidden sibling
// ".<name>.tmp-<pid>-<n>" (locked while open), fsynced, renamed into place, and the directory
// fsynced. Destroyed without commit(), the temporary file is removed. Stale temporary siblings of
// dead processes are removed on construction (with a notice).
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path, FileWriter::Options opts = FileWriter::Options());
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  FileWriter& out() { return *w_; }
  void write(const void* data, size_t n) { w_->write(data, n); }
  const std::string& temp_path() const { return tmp_; }
  void commit();

 private:
  std::string path_, tmp_;
  FileWriter* w_ = nullptr;
  bool committed_ = false;
};

}  // namespace sluice
