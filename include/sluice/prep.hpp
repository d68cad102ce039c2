// sluice prep: inputs -> a training-ready dataset directory (npy or Meta binary rows).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sluice/engine.hpp"

namespace sluice {

enum class VocabMode : uint8_t { kFirstSeen, kNone };
enum class OutputFormat : uint8_t { kNpy, kDlrmBin };
// kParts: one part per input, or per day with --days. kMeta: the files Meta's DLRM reads with
// --mlperf-bin-loader: NAME_train.bin (every day but the last), NAME_test.bin (the first half of the
// last day, rounded up), NAME_val.bin (the rest of it) and NAME_fea_count.npz (key "counts": the 26
// table sizes, int32). Binary rows only.
enum class OutputLayout : uint8_t { kParts, kMeta };

struct PrepOptions {
  std::vector<std::string> inputs;
  std::string out;
  uint64_t max_ind_range = 0;
  VocabMode vocab = VocabMode::kFirstSeen;
  uint32_t min_freq = 1;
  int threads = 0;
  OnError on_error = OnError::kFail;
  OutputFormat format = OutputFormat::kNpy;
  int days = 0;              // 0 = one part per input file
  OutputLayout layout = OutputLayout::kParts;
  std::string meta_name = "day";  // kMeta: the files' prefix
  std::string engine = "cpu";
  bool overwrite = false;
  bool progress = false;     // a progress line on a terminal (stderr)
  double progress_every = 0; // > 0 (stderr not a terminal): a plain progress line every this many seconds
  size_t chunk_bytes = 0;    // input bytes per block; 0 = the engine's default (default_block_bytes)
  bool two_pass = false;     // --days / --layout meta: spill and cut even where the rows could be
                             // counted ahead (the same bytes; for comparison)
};

struct PrepResult {
  uint64_t rows = 0;
  uint64_t rows_skipped = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  bool streamed = false;     // parts written while the engine ran: one pass
  double read_seconds = 0;   // the engine's run (reading, preprocessing; streamed: writing the parts too)
  double write_seconds = 0;  // after it: the days cut from the spilled rows (--days), the vocabulary,
                             // the manifest, committing
  std::string engine;        // the engine that ran ("auto" resolved)
  uint64_t device_cycles = 0; // fpga engine: the core's clock cycles for the input bytes (EngineStats)
  std::vector<std::string> parts;
  std::vector<uint64_t> part_rows;
  std::vector<int64_t> vocab_sizes;
};

// Runs the whole preparation; the output directory appears atomically and only on success.
// Throws sluice::Error ("FILE:LINE: reason" for a bad row in fail mode).
PrepResult prep(const PrepOptions& opts);

// Meta's day split: total = q*D + r, the first r days get q+1 rows.
std::vector<uint64_t> split_days(uint64_t total, int days);

// Meta's layout from the rows of each day: {train, test, val} rows. Train is every day but the
// last; the last day's first ceil(n/2) rows are the test set, the rest the validation set.
std::vector<uint64_t> meta_split(const std::vector<uint64_t>& day_rows);

// Why `name` cannot prefix Meta's files, or "" when it can: letters, digits, '_' and '-' only
// (Meta's loader cuts the processed-data file name at its first '.').
std::string meta_name_problem(const std::string& name);

}  // namespace sluice
