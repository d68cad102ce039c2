// Training datasets: prepared outputs (npy, dlrm-bin) and raw day files, served as a stream of
// batches in row order through a bounded ring that a producer thread fills ahead of the consumer.
#include "sluice/dataset.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/cpu/value_pass.hpp"
#include "sluice/engine.hpp"
#include "sluice/io.hpp"
#include "sluice/vocab.hpp"
#include "source/blocks.hpp"
#include "util/mapped_file.hpp"
#include "dataset/ring.hpp"

namespace fs = std::filesystem;

namespace sluice {

using dataset_detail::RingStream;
using dataset_detail::StopProducing;

// What the train and test streams of one raw dataset share: the engine (which keeps the first-seen
// ids as they are assigned) and a loaded vocabulary.
struct OnlineState {
  std::unique_ptr<Engine> engine;
  std::shared_ptr<Vocabulary> vocab;  // kVocabFromPrep
};

namespace {

// Counts the lines of a (possibly gzip) file: '\n's plus one for a last line without '\n'.
int64_t count_lines(const std::string& path) {
  auto src = open_byte_source(path);
  std::vector<char> buf(1 << 20);
  int64_t n = 0;
  char last = '\n';
  for (;;) {
    const size_t got = src->read(buf.data(), buf.size());
    if (got == 0) break;
    const char* p = buf.data();
    const char* e = p + got;
    while ((p = static_cast<const char*>(std::memchr(p, '\n', size_t(e - p))))) { ++n; ++p; }
    last = buf[got - 1];
  }
  if (last != '\n') ++n;
  return n;
}

// "day_<N>", optionally followed by ".tsv" and then ".gz".
bool parse_day_name(const std::string& name, long* day) {
  if (name.rfind("day_", 0) != 0) return false;
  size_t i = 4, j = 4;
  while (j < name.size() && j - i < 9 && name[j] >= '0' && name[j] <= '9') ++j;
  if (j == i) return false;
  std::string rest = name.substr(j);
  if (rest.rfind(".tsv", 0) == 0) rest = rest.substr(4);
  if (!rest.empty() && rest != ".gz") return false;
  *day = std::stol(name.substr(i, j - i));
  return true;
}

// Row range [begin, end) of each part that a split covers.
struct Range {
  size_t part;
  int64_t begin, end;
};

std::vector<Range> split_ranges(const DatasetInfo& info, Split split, uint64_t skip) {
  if (info.parts.empty()) throw Error(info.dir + ": no days");
  if (split != Split::kAll && info.parts.size() < 2)
    throw Error(info.dir + ": need at least 2 days (every day but the last trains, the last one tests), found " +
                std::to_string(info.parts.size()));
  std::vector<Range> r;
  const size_t last = info.parts.size() - 1;
  switch (split) {
    case Split::kTrain:
      for (size_t p = 0; p < last; ++p) r.push_back({p, 0, info.part_rows[p]});
      break;
    case Split::kTest:
      r.push_back({last, 0, (info.part_rows[last] + 1) / 2});
      break;
    case Split::kVal:
      r.push_back({last, (info.part_rows[last] + 1) / 2, info.part_rows[last]});
      break;
    case Split::kAll:
      for (size_t p = 0; p <= last; ++p) r.push_back({p, 0, info.part_rows[p]});
      break;
  }
  // Resume: drop the first `skip` rows.
  for (auto& x : r) {
    const int64_t n = x.end - x.begin;
    const int64_t d = std::min<int64_t>(n, int64_t(skip));
    x.begin += d;
    skip -= uint64_t(d);
  }
  return r;
}

}  // namespace

DatasetInfo inspect_dataset(const std::string& dir) {
  std::error_code ec;
  if (dir.empty() || !fs::exists(dir, ec)) throw Error(dir + ": no such data directory");
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory");
  DatasetInfo info;
  info.dir = dir;
  const std::string manifest = dir + "/manifest.json";
  if (fs::exists(manifest, ec)) {
    std::ifstream in(manifest);
    nlohmann::json m;
    try {
      in >> m;
      const std::string format = m.at("format").get<std::string>();
      info.kind = format == "npy" ? DatasetKind::kPreparedNpy : DatasetKind::kPreparedBin;
      if (format != "npy" && format != "dlrm-bin") throw Error(manifest + ": unknown format '" + format + "'");
      // Meta's layout holds a training file and the last day cut in two, not days: read as days, its
      // test file would train and the validation file would test.
      if (m.value("layout", "parts") == "meta")
        throw Error(manifest + ": Meta's layout (NAME_train/test/val.bin, for Meta's dlrm_s_pytorch.py); "
                    "sluice train reads days: prepare with --format dlrm-bin --days D (or one input per day)");
      for (const auto& p : m.at("parts")) {
        info.parts.push_back(p.at("name").get<std::string>());
        info.part_rows.push_back(p.at("rows").get<int64_t>());
      }
      info.table_sizes = m.at("vocab_sizes").get<std::vector<int64_t>>();
      if (m.value("sparse_dtype", "int32") != "int32")
        throw Error(manifest + ": sparse ids are int64 (prepared with --vocab none and no --max-ind-range); "
                    "training needs bounded ids: prepare with a vocabulary or --max-ind-range");
    } catch (const nlohmann::json::exception& e) {
      throw Error(manifest + ": bad manifest: " + e.what());
    }
    if (info.table_sizes.size() != size_t(kNumSparse))
      throw Error(manifest + ": vocab_sizes must have 26 entries");
    for (const auto& p : info.parts) {
      const std::string f = info.kind == DatasetKind::kPreparedNpy ? dir + "/" + p + "_dense.npy" : dir + "/" + p + ".bin";
      if (!fs::exists(f, ec)) throw Error(f + ": missing (the manifest lists part '" + p + "')");
    }
    if (info.parts.empty()) throw Error(manifest + ": no parts");
    return info;
  }
  // Raw day files: day_<N>, day_<N>.tsv, day_<N>.gz, day_<N>.tsv.gz, sorted by N.
  std::vector<std::pair<long, std::string>> days;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    long day;
    if (e.is_regular_file() && parse_day_name(name, &day)) days.push_back({day, e.path().string()});
  }
  if (days.empty()) throw Error(dir + ": empty data directory: no manifest.json (sluice prep output) and no day_N.tsv[.gz] files");
  std::sort(days.begin(), days.end());
  for (size_t i = 1; i < days.size(); ++i)
    if (days[i].first == days[i - 1].first) throw Error(dir + ": two files for day " + std::to_string(days[i].first));
  info.kind = DatasetKind::kRawDays;
  for (auto& d : days) {
    info.parts.push_back("day_" + std::to_string(d.first));
    info.files.push_back(d.second);
    info.part_rows.push_back(count_lines(d.second));
  }
  return info;
}

DatasetInfo inspect_files(const std::vector<std::string>& files) {
  if (files.empty()) throw Error("no data files given");
  DatasetInfo info;
  info.kind = DatasetKind::kRawDays;
  info.dir = files.front();
  for (const auto& f : files) {
    std::error_code ec;
    if (!fs::exists(f, ec)) throw Error(f + ": no such file");
    if (fs::is_directory(f, ec)) throw Error(f + ": a directory, not a day file");
    info.parts.push_back(fs::path(f).filename().string());
    info.files.push_back(f);
    info.part_rows.push_back(count_lines(f));
  }
  return info;
}

int64_t split_rows(const DatasetInfo& info, Split split) {
  int64_t n = 0;
  for (const auto& r : split_ranges(info, split, 0)) n += r.end - r.begin;
  return n;
}

std::vector<int64_t> table_sizes_for(const DatasetInfo& info, const StreamOptions& o) {
  if (info.kind != DatasetKind::kRawDays) {
    std::vector<int64_t> t = info.table_sizes;
    // Prepared without a vocabulary: the modulo bound (or max value + 1) is already the size.
    return t;
  }
  std::vector<int64_t> t(kNumSparse);
  for (int c = 0; c < kNumSparse; ++c) {
    switch (o.ids) {
      case OnlineIds::kModulo:
        if (o.max_ind_range == 0 || o.max_ind_range > (uint64_t(1) << 31))
          throw Error("online modulo ids need --max-ind-range N with 0 < N <= 2^31");
        t[size_t(c)] = int64_t(o.max_ind_range);
        break;
      case OnlineIds::kFirstSeen:
        t[size_t(c)] = o.first_seen_capacity > 0 ? o.first_seen_capacity : 1'000'000;
        break;
      case OnlineIds::kVocabFromPrep: {
        // One extra row per table for values the vocabulary has not seen.
        const std::string meta = o.vocab_dir + "/vocab/meta.json";
        std::ifstream in(meta);
        if (!in) throw Error(meta + ": cannot open (need a `sluice prep` output with a vocabulary)");
        nlohmann::json m;
        try {
          in >> m;
          const auto sizes = m.at("table_sizes").get<std::vector<int64_t>>();
          if (sizes.size() != size_t(kNumSparse)) throw Error(meta + ": table_sizes must have 26 entries");
          for (int k = 0; k < kNumSparse; ++k) t[size_t(k)] = sizes[size_t(k)] + 1;
        } catch (const nlohmann::json::exception& e) {
          throw Error(meta + ": bad vocabulary metadata: " + e.what());
        }
        return t;
      }
    }
  }
  return t;
}

std::shared_ptr<OnlineState> make_online_state(const DatasetInfo& info, const StreamOptions& o) {
  auto st = std::make_shared<OnlineState>();
  if (info.kind != DatasetKind::kRawDays) return st;
  EngineOptions eo;
  eo.max_ind_range = o.ids == OnlineIds::kModulo ? o.max_ind_range : 0;
  eo.threads = o.threads;
  eo.dense = DenseOut::kLog;
  if (o.ids == OnlineIds::kFirstSeen) {
    eo.ids = IdMode::kFirstSeen;
    eo.id_capacity = o.first_seen_capacity > 0 ? o.first_seen_capacity : 1'000'000;
    eo.keep_counts = false;
  } else if (o.ids == OnlineIds::kVocabFromPrep) {
    if (o.vocab_dir.empty()) throw Error("vocabulary ids need a vocabulary directory (a sluice prep output)");
    st->vocab = std::make_shared<Vocabulary>(Vocabulary::load(o.vocab_dir));
    eo.ids = IdMode::kVocab;
    eo.vocab = st->vocab.get();
    eo.unseen = Vocabulary::Unseen::kExtraId;
  }
  st->engine = make_engine(o.engine.empty() ? "cpu" : o.engine, eo);
  const std::string name = st->engine->name();
  eo.block_bytes = default_block_bytes(name);
  // Training on a GPU with the cuda engine: batches are born in that GPU's memory.
  if (name == "cuda" && o.device >= 0) {
    eo.output = MemoryKind::kDevice;
    eo.device = o.device;
    // Blocks are read into page-locked buffers by a few threads rather than copied from the files'
    // mappings registered with the GPU: registering (and unregistering) a mapping holds the CUDA
    // driver's lock for about 50 ms per GB, which stalls the training thread's launches
    // (docs/benchmarks.md, "End to end"). Four threads read about 15 GB/s inside the engine on the
    // H100 host, four times what training consumes, and leave the other cores to the trainer.
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    eo.read_threads = std::clamp(cores / 4, 1, 4);
  }
  st->engine = make_engine(name, eo);
  return st;
}

std::unique_ptr<BatchStream> open_batch_stream(const DatasetInfo& info, const StreamOptions& o,
                                               std::shared_ptr<OnlineState> state) {
  auto ranges = split_ranges(info, o.split, o.start_row);
  if (info.kind == DatasetKind::kRawDays && !state) state = make_online_state(info, o);
  const int ring_device =
      state && state->engine && state->engine->options().output == MemoryKind::kDevice ? state->engine->options().device : -1;
  // A ring in GPU memory is cheap and absorbs the engine's pauses (a new file, a table growing).
  const int depth = ring_device >= 0 ? std::max(o.ring_depth, 12) : o.ring_depth;
  auto ring = std::make_unique<RingStream>(o.batch_size, depth, o, ring_device);
  if (info.kind == DatasetKind::kPreparedNpy) {
    ring->start([info, ranges](RingStream& r) {
      for (const auto& g : ranges) {
        if (g.begin >= g.end) continue;
        const std::string base = info.dir + "/" + info.parts[g.part];
        const NpyHeader hd = read_npy_header(base + "_dense.npy");
        const NpyHeader hs = read_npy_header(base + "_sparse.npy");
        const NpyHeader hl = read_npy_header(base + "_labels.npy");
        if (hd.type != NpyType::kFloat32 || hs.type != NpyType::kInt32 || hl.type != NpyType::kInt32 ||
            hd.shape.size() != 2 || hd.shape[0] < g.end || hs.shape[0] < g.end || hl.shape[0] < g.end)
          throw Error(base + "_*.npy: unexpected dtype or shape");
        MappedFile md(base + "_dense.npy"), ms(base + "_sparse.npy"), ml(base + "_labels.npy");
        const float* dense = reinterpret_cast<const float*>(md.data() + hd.data_offset);
        const uint32_t* sparse = reinterpret_cast<const uint32_t*>(ms.data() + hs.data_offset);
        const int32_t* labels = reinterpret_cast<const int32_t*>(ml.data() + hl.data_offset);
        for (int64_t b = g.begin; b < g.end; b += 65536) {
          const int64_t n = std::min<int64_t>(65536, g.end - b);
          r.add(dense + b * kNumDense, sparse + b * kNumSparse, labels + b, n);
        }
      }
    });
  } else if (info.kind == DatasetKind::kPreparedBin) {
    ring->start([info, ranges](RingStream& r) {
      const float* table = detail::dense_log_table();
      std::vector<float> dense;
      std::vector<uint32_t> sparse;
      std::vector<int32_t> labels;
      for (const auto& g : ranges) {
        if (g.begin >= g.end) continue;
        const std::string path = info.dir + "/" + info.parts[g.part] + ".bin";
        MappedFile m(path);
        if (m.size() < size_t(g.end) * kDlrmBinRowBytes) throw Error(path + ": shorter than the manifest says");
        for (int64_t b = g.begin; b < g.end; b += 65536) {
          const int64_t n = std::min<int64_t>(65536, g.end - b);
          dense.resize(size_t(n) * kNumDense);
          sparse.resize(size_t(n) * kNumSparse);
          labels.resize(size_t(n));
          for (int64_t i = 0; i < n; ++i) {
            int32_t row[kDlrmBinRowInts];
            std::memcpy(row, m.data() + size_t(b + i) * kDlrmBinRowBytes, sizeof row);
            labels[size_t(i)] = row[0];
            for (int k = 0; k < kNumDense; ++k) dense[size_t(i) * kNumDense + k] = detail::dense_value_cached(row[1 + k], table);
            for (int k = 0; k < kNumSparse; ++k) sparse[size_t(i) * kNumSparse + k] = uint32_t(row[1 + kNumDense + k]);
          }
          r.add(dense.data(), sparse.data(), labels.data(), n);
        }
      }
    });
  } else {
    if (o.ids == OnlineIds::kModulo) (void)table_sizes_for(info, o);  // validates the bound
    ring->start([info, ranges, state, o](RingStream& r) {
      Engine& engine = *state->engine;
      // One engine run over every file of the split, so that the engine reads ahead across files
      // (a run per file would drain its pipeline at each file's end). First-seen ids must see every
      // row in order, skipped (resumed) ones too; files before a split's first rows are read only
      // for them.
      std::vector<std::string> files;
      std::vector<Range> file_ranges;
      uint64_t limit = 0;
      if (o.ids == OnlineIds::kFirstSeen && o.ids_from_start && !ranges.empty())
        for (size_t p = 0; p < ranges.front().part; ++p) {
          files.push_back(info.files[p]);
          file_ranges.push_back({p, 0, 0});
        }
      for (const auto& g : ranges) {
        if (g.begin >= g.end && o.ids != OnlineIds::kFirstSeen) continue;
        files.push_back(info.files[g.part]);
        file_ranges.push_back(g);
      }
      if (files.empty()) return;
      // Rows before the last file's range end: the engine stops there (later rows get no ids).
      for (size_t i = 0; i + 1 < file_ranges.size(); ++i) limit += uint64_t(info.part_rows[file_ranges[i].part]);
      limit += uint64_t(file_ranges.back().end);
      std::vector<int64_t> pos(files.size(), 0);  // rows seen so far in each file
      BlockReader blocks(files, engine.options().block_bytes, true, size_t(std::max(0, engine.options().threads)));
      engine.run(blocks, [&](const ChunkView& c) {
        const Range& g = file_ranges[c.file_index];
        const int64_t lo = pos[c.file_index], hi = lo + c.rows;
        pos[c.file_index] = hi;
        const int64_t b = std::max(lo, g.begin), e = std::min(hi, g.end);
        if (e > b) {
          if (c.memory == MemoryKind::kDevice) r.add_device(c, b - lo, e - b);
          else r.add(c.dense + (b - lo) * kNumDense, c.sparse + (b - lo) * kNumSparse, c.labels + (b - lo), e - b);
        }
        return !r.stopping();  // the stream is closing: the engine stops at this chunk
      }, limit);
      r.stream_ended();
    });
  }
  return ring;
}

}  // namespace sluice
