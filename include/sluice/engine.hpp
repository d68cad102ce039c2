// Engines run the pipeline semantics (include/sluice/ops.hpp) over line-aligned blocks of input
// (src/source/blocks.hpp) and hand out chunks of columns in input order. Every engine — cpu
// (host threads), cuda (GPU kernels), fpga (the RTL core behind its driver) — implements this one
// interface and gives the same bytes for the same input and options.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/batch.hpp"
#include "sluice/ops.hpp"
#include "sluice/source.hpp"
#include "sluice/vocab.hpp"

namespace sluice {

class BlockReader;

enum class OnError : uint8_t { kFail, kSkip };

// What the engine does with the dense ints.
enum class DenseOut : uint8_t {
  kLog,          // float32 ln(x+1) of Neg2Zero(x)  (npy output, training)
  kClampedInt,   // int32 Neg2Zero(x) saturated at 2^31-1 (Meta's binary rows)
};

// How categorical values become ids.
enum class IdMode : uint8_t {
  kRaw,        // the value, % max_ind_range when set (no vocabulary)
  kDistinct,   // raw values, plus each chunk's distinct values in order of first appearance with their
               // counts (for a VocabBuilder); host engines only
  kFirstSeen,  // final first-seen ids, assigned by the engine as rows stream (min_freq > 1: the engine
               // reads the input twice); the vocabulary is available after the run
  kVocab,      // ids from a given vocabulary; values outside it get `unseen`
};

struct EngineOptions {
  uint64_t max_ind_range = 0;      // 0 = off; applied before any vocabulary
  OnError on_error = OnError::kFail;
  DenseOut dense = DenseOut::kLog;
  size_t max_bad_rows_kept = 100;  // skip mode: how many bad rows to describe (all are counted)
  IdMode ids = IdMode::kRaw;
  uint32_t min_freq = 1;           // kFirstSeen: values seen fewer times get id 0, the rest 1..
  // kFirstSeen: at most this many ids per column; later new values share the last one (capacity-1).
  // 0 = unbounded.
  int64_t id_capacity = 0;
  // kFirstSeen: count each value's occurrences (take_vocabulary() reports them; prep writes them).
  // Online training needs no counts and runs a little faster without.
  bool keep_counts = true;
  const Vocabulary* vocab = nullptr;                  // kVocab
  Vocabulary::Unseen unseen = Vocabulary::Unseen::kExtraId;  // kVocab
  MemoryKind output = MemoryKind::kHost;  // where chunks are handed out (kDevice: cuda engine only)
  int device = 0;                         // CUDA ordinal (cuda engine)
  int threads = 0;                        // host threads (cpu: parsing; others: reading); 0 = all cores
  size_t block_bytes = 4u << 20;          // input bytes per block
  // cuda engine, uncompressed files: N > 0 threads read each block into a page-locked buffer, from
  // which it is copied to the GPU; -1 picks default_read_threads(). 0 registers each file's mapping
  // with the GPU instead and copies blocks straight from the page cache: no core is busy copying, but
  // registering runs at about 20 GB/s and holds the CUDA driver's lock meanwhile, which stalls every
  // other thread's copies and launches (for hundreds of milliseconds per file).
  int read_threads = -1;
};

// The cuda engine's read threads when EngineOptions::read_threads is -1: half the host's cores, from
// 1 to 8.
int default_read_threads();

struct BadRow {
  std::string file;
  uint64_t line = 0;  // 1-based line (TSV) or row (binary) number in the file
  std::string reason;
};

struct EngineStats {
  uint64_t rows = 0;          // good rows delivered
  uint64_t rows_skipped = 0;  // bad rows skipped (skip mode)
  uint64_t bytes = 0;         // input bytes (decompressed)
  std::vector<BadRow> bad_rows;  // the first max_bad_rows_kept skipped rows
  std::vector<uint64_t> rows_per_file;
  bool stopped = false;       // the sink asked to stop before the end
  // fpga engine: the core's clock cycles over this run's transfers, as its device reports them (the
  // Verilated core counts them in simulation); 0 for the other engines.
  uint64_t device_cycles = 0;
};

// One chunk of rows, in input order: non-owning views of the engine's memory, valid until the sink
// returns. Columns are row-major: dense[r*13 + i], sparse[r*26 + c].
struct ChunkView {
  size_t file_index = 0;
  uint64_t seq = 0;           // chunk number over the run
  uint64_t first_row = 0;     // index of the first row over the run
  int64_t rows = 0;
  uint64_t bytes = 0;         // input bytes the chunk covered
  const int32_t* labels = nullptr;     // [rows] 0 or 1
  const float* dense = nullptr;        // [rows*13] with DenseOut::kLog
  const int32_t* dense_int = nullptr;  // [rows*13] with DenseOut::kClampedInt
  const uint32_t* sparse = nullptr;    // [rows*26] values or ids, per IdMode
  MemoryKind memory = MemoryKind::kHost;
  int device = -1;                     // CUDA ordinal when memory == kDevice
  void* stream = nullptr;              // cudaStream_t the columns were produced on (kDevice): work
                                       // reading them must be ordered after it (enqueue it there)
  // IdMode::kDistinct (host memory): per column, the distinct values in order of first appearance
  // and their counts in this chunk (arrays of kNumSparse vectors).
  const std::vector<uint32_t>* distinct = nullptr;
  const std::vector<uint32_t>* distinct_count = nullptr;
  // Host memory, optional (empty when the engine cannot): hands the chunk's labels, dense and sparse
  // arrays over to the caller instead of reusing them for a later chunk. The pointers above then stay
  // valid for as long as the returned owner lives (on any thread); the engine goes on with other
  // buffers. For a sink that works on the rows after it returns (a writer thread), in place of a
  // copy. Call at most once, during the sink call.
  std::function<std::shared_ptr<const void>()> keep;
};

// Receives chunks in input order on the thread that called run(). Returning false stops the run
// cleanly (no exception); the engine then returns its statistics so far with `stopped` set.
using ChunkSink = std::function<bool(const ChunkView&)>;

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* name() const = 0;
  virtual bool supports(IdMode mode) const = 0;
  virtual const EngineOptions& options() const = 0;

  // Streams every block of `blocks` through the pipeline and hands the chunks to `sink` in input
  // order. In fail mode the first bad row throws sluice::Error "FILE:LINE: reason" before any chunk
  // holding or following it is handed out. Exceptions thrown by the sink propagate. With a
  // `row_limit`, rows past the first `row_limit` good rows are neither handed out nor given ids.
  virtual EngineStats run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit = kNoRowLimit) = 0;
  static constexpr uint64_t kNoRowLimit = ~uint64_t(0);

  // IdMode::kFirstSeen: the vocabulary the run built (values in id order, with counts). Moves it
  // out; call once after run().
  virtual Vocabulary take_vocabulary();
};

// "cpu", "cuda", "fpga", or "auto" (cuda when a GPU is usable, else cpu). Throws sluice::Error
// saying why an engine is not available (not built in, no GPU, ...).
std::unique_ptr<Engine> make_engine(const std::string& name, const EngineOptions& opts);

// The cpu engine's kernels on this processor, chosen at run time from its instruction sets, e.g.
// "structural avx2, fields avx2".
std::string cpu_engine_kernels();

// Engines compiled into this build, and whether a CUDA GPU is usable now.
std::vector<std::string> available_engines();
bool cuda_device_available(std::string* why = nullptr);

// The block size an engine runs best with: 4 MiB for the cpu engine (chunks per core), 64 MiB for
// the cuda engine (enough work per launch sequence to fill the GPU).
size_t default_block_bytes(const std::string& engine);

// Runs `engine` over files (a BlockReader with the engine's block size).
EngineStats run_files(Engine& engine, const std::vector<std::string>& inputs, const ChunkSink& sink);

// "bad integer in I3" style description of a bad row.
std::string describe_bad_row(RowError err, int field);

}  // namespace sluice
