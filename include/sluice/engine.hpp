// Engines run the pipeline semantics (include/sluice/ops.hpp) over whole inputs. This header is the
// cpu engine: multi-threaded, chunked, streaming; rows leave it in input order whatever the thread
// count or chunk size.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sluice/ops.hpp"
#include "sluice/source.hpp"

namespace sluice {
struct Vocabulary;
}

namespace sluice {

enum class OnError : uint8_t { kFail, kSkip };

// What the engine does with the dense ints.
enum class DenseOut : uint8_t {
  kLog,          // float32 ln(x+1) of Neg2Zero(x)  (npy output, training)
  kClampedInt,   // int32 Neg2Zero(x) saturated at 2^31-1 (Meta's binary rows)
};

struct EngineOptions {
  uint64_t max_ind_range = 0;      // 0 = off
  OnError on_error = OnError::kFail;
  DenseOut dense = DenseOut::kLog;
  int threads = 0;                 // 0 = all cores
  size_t chunk_bytes = 4u << 20;   // bytes of input per work unit
  bool distinct = false;           // also collect each chunk's distinct sparse values (vocabulary)
  size_t max_bad_rows_kept = 100;  // skip mode: how many bad rows to describe (all are counted)
  // When set, workers map each chunk's sparse values to ids through this vocabulary right after
  // parsing, in parallel; values not in it become an extra id past the end (Vocabulary::Unseen).
  const Vocabulary* vocab = nullptr;
};

struct BadRow {
  std::string file;
  uint64_t line = 0;  // 1-based line (TSV) or row (binary) number in the file
  std::string reason;
};

// One chunk of rows, in input order. Columns are row-major per row: dense[r*13 + i], sparse[r*26 + c].
struct ParsedChunk {
  size_t file_index = 0;
  uint64_t seq = 0;             // chunk number over the whole run
  uint64_t first_row = 0;       // index of the first good row over the whole run
  int64_t rows = 0;             // good rows
  uint64_t bytes = 0;           // input bytes the chunk covered
  std::vector<int32_t> labels;
  std::vector<float> dense;             // DenseOut::kLog
  std::vector<int32_t> dense_int;       // DenseOut::kClampedInt
  std::vector<uint32_t> sparse;         // after modulo, before vocabulary
  // With EngineOptions::distinct: per column, the chunk's distinct values in order of first
  // appearance, and how often each occurs in the chunk.
  std::vector<uint32_t> distinct[kNumSparse];
  std::vector<uint32_t> distinct_count[kNumSparse];
  // Internal bookkeeping (line numbers of bad rows are chunk-relative until delivery).
  uint64_t lines = 0;                   // lines (or binary rows) the chunk covered
  struct LocalBad { uint64_t line; RowError err; int field; };
  std::vector<LocalBad> bad;
};

struct EngineStats {
  uint64_t rows = 0;          // good rows delivered
  uint64_t rows_skipped = 0;  // bad rows skipped (skip mode)
  uint64_t bytes = 0;         // input bytes (decompressed)
  std::vector<BadRow> bad_rows;  // the first max_bad_rows_kept skipped rows
  std::vector<uint64_t> rows_per_file;
};

class CpuEngine {
 public:
  explicit CpuEngine(EngineOptions opts);
  const EngineOptions& options() const { return opts_; }
  int threads() const { return threads_; }

  // Streams the inputs in the order given and calls consume() on the calling thread once per chunk,
  // in input order. In fail mode the first bad row throws sluice::Error "FILE:LINE: reason". If
  // consume() throws, the run stops and the exception propagates. Returns the run's statistics.
  EngineStats run(const std::vector<std::string>& inputs,
                  const std::function<void(ParsedChunk&)>& consume);

  // Parses one in-memory buffer of whole lines (used by tests, benchmarks and the fuzzer); bad rows
  // are recorded in chunk.bad with chunk-relative 1-based line numbers and never thrown.
  void parse_buffer(const char* data, size_t size, InputFormat format, ParsedChunk* chunk) const;

 private:
  EngineOptions opts_;
  int threads_;
};

// "FILE:LINE: bad integer in I3" style description of a bad row.
std::string describe_bad_row(RowError err, int field);

}  // namespace sluice
