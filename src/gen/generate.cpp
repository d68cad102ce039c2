// sluice gen: synthetic Criteo-like click logs (see docs/gen.md).
//
// Rows are cut into blocks of kBlockRows rows within each day; block b of day d draws from its own
// counter-based stream keyed by (seed, d, b), so the bytes do not depend on the thread count.
// Workers format blocks into a ring of buffers in parallel; the calling thread writes them out in
// order, so at most 2 * threads + 2 blocks are in memory at a time.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "gen/auc.hpp"
#include "gen/fastmath.hpp"
#include "gen/model.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/io.hpp"
#include "sluice/gen.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"

namespace sluice {

namespace gen_detail {

inline constexpr uint32_t kBlockRows = 16384;
// label + 13 * (tab + "-2147483648") + 26 * (tab + 8 hex) + newline
inline constexpr size_t kMaxRowBytes = 1 + kNumDense * 12 + kNumSparse * 9 + 1;

namespace {

struct Digits2 {
  char d[200];
  constexpr Digits2() : d() {
    for (int i = 0; i < 100; ++i) {
      d[2 * i] = char('0' + i / 10);
      d[2 * i + 1] = char('0' + i % 10);
    }
  }
};
constexpr Digits2 kDigits2;

struct Hex2 {
  char d[512];
  constexpr Hex2() : d() {
    const char* x = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) {
      d[2 * i] = x[i >> 4];
      d[2 * i + 1] = x[i & 15];
    }
  }
};
constexpr Hex2 kHex2;

inline int decimal_digits(uint32_t v) {
  int n = 1;
  for (;;) {
    if (v < 10) return n;
    if (v < 100) return n + 1;
    if (v < 1000) return n + 2;
    if (v < 10000) return n + 3;
    v /= 10000;
    n += 4;
  }
}

inline char* put_int(char* p, int32_t x) {
  uint32_t v;
  if (x < 0) {
    *p++ = '-';
    v = 0u - uint32_t(x);
  } else {
    v = uint32_t(x);
  }
  int n = decimal_digits(v);
  char* e = p + n;
  char* q = e;
  while (v >= 100) {
    q -= 2;
    std::memcpy(q, kDigits2.d + 2 * (v % 100), 2);
    v /= 100;
  }
  if (v >= 10) {
    q -= 2;
    std::memcpy(q, kDigits2.d + 2 * v, 2);
  } else {
    *--q = char('0' + v);
  }
  return e;
}

inline char* put_hex8(char* p, uint32_t h) {
  std::memcpy(p, kHex2.d + 2 * (h >> 24), 2);
  std::memcpy(p + 2, kHex2.d + 2 * ((h >> 16) & 0xff), 2);
  std::memcpy(p + 4, kHex2.d + 2 * ((h >> 8) & 0xff), 2);
  std::memcpy(p + 6, kHex2.d + 2 * (h & 0xff), 2);
  return p + 8;
}

struct Task {
  int day;
  uint64_t block;      // index of the block within its day
  uint64_t first_row;  // index within the day of the block's first row
  uint32_t rows;
};

struct Slot {
  std::unique_ptr<char[]> buf;
  size_t len = 0;
  uint64_t positives = 0;
  int64_t ready = -1;  // the task whose bytes are in buf, -1 when free
};

// Generates one block: formats its rows into out (room for task.rows * kMaxRowBytes) and returns
// the byte count; signed probabilities of test rows go to test_p (label 1: +p, label 0: -p).
size_t generate_block(const Model& model, uint64_t seed, const Task& t, char* out,
                      uint64_t* positives, double* test_p, uint64_t test_rows) {
  Rng rng(block_key(seed, uint64_t(t.day), t.block));
  DrawnRow row;
  char* p = out;
  uint64_t pos = 0;
  for (uint32_t i = 0; i < t.rows; ++i) {
    model.draw(rng, row);
    double prob = model.probability(row);
    int label = unit_open(uint32_t(rng.next() >> 32)) < prob ? 1 : 0;
    pos += uint64_t(label);
    uint64_t r = t.first_row + i;
    if (test_p != nullptr && r < test_rows) test_p[r] = label ? prob : -prob;

    *p++ = char('0' + label);
    for (int j = 0; j < kNumDense; ++j) {
      *p++ = '\t';
      if (row.ints[j] != kMissingInt) p = put_int(p, row.ints[j]);
    }
    for (int c = 0; c < kNumSparse; ++c) {
      *p++ = '\t';
      if (row.items[c] != kAbsent) p = put_hex8(p, model.item_hash(c, row.items[c]));
    }
    *p++ = '\n';
  }
  *positives = pos;
  return size_t(p - out);
}

}  // namespace

double auc_of_signed(std::vector<double>& v) {
  auto mid = std::partition(v.begin(), v.end(), [](double x) { return x > 0; });
  size_t n1 = size_t(mid - v.begin()), n0 = v.size() - n1;
  if (n1 == 0 || n0 == 0) return std::numeric_limits<double>::quiet_NaN();
  for (auto it = mid; it != v.end(); ++it) *it = -*it;
  std::sort(v.begin(), mid);
  std::sort(mid, v.end());
  // For each positive p: 2 * #(negatives < p) + #(negatives == p).
  unsigned __int128 twice = 0;
  size_t lt = 0, le = 0;
  for (auto it = v.begin(); it != mid; ++it) {
    double x = *it;
    while (lt < n0 && mid[lt] < x) ++lt;
    if (le < lt) le = lt;
    while (le < n0 && mid[le] <= x) ++le;
    twice += 2 * uint64_t(lt) + uint64_t(le - lt);
  }
  return double(twice) / (2.0 * double(n1) * double(n0));
}

namespace {

std::string human_seconds(double s) {
  char b[64];
  if (!(s >= 0) || s > 1e7) return "?";
  long t = long(s + 0.5);
  if (t >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(b, sizeof b, "%lds", t);
  return b;
}

nlohmann::ordered_json model_json(const Model& model) {
  using nlohmann::ordered_json;
  ordered_json m;
  m["version"] = kGenVersion;
  m["target_ctr"] = kTargetCtr;
  m["bias"] = model.bias();
  m["calibration_rows"] = kCalibrationRows;
  m["block_rows"] = kBlockRows;
  ordered_json dense = ordered_json::array();
  for (int j = 0; j < kNumDense; ++j) {
    const DenseSpec& s = kDense[j];
    std::string name(1, 'I');
    name += std::to_string(j + 1);
    dense.push_back({{"name", name},
                     {"missing", s.missing},
                     {"negative", s.negative},
                     {"median", s.median},
                     {"shape", s.shape},
                     {"max", s.max},
                     {"weight", s.weight},
                     {"quad", s.quad},
                     {"quad_center", s.quad_center}});
  }
  m["dense"] = dense;
  ordered_json sparse = ordered_json::array();
  for (int c = 0; c < kNumSparse; ++c) {
    const SparseSpec& s = kSparse[c];
    std::string name(1, 'C');
    name += std::to_string(c + 1);
    sparse.push_back({{"name", name},
                      {"cardinality", model.cardinality(c)},
                      {"missing", s.missing},
                      {"zipf", s.zipf},
                      {"effect", s.effect},
                      {"halflife", s.halflife},
                      {"missing_effect_factor", kMissingEffectFactor}});
  }
  m["sparse"] = sparse;
  ordered_json pairs = ordered_json::array();
  for (const PairSpec& ps : kPairs) {
    std::string a(1, ps.dense_a ? 'I' : 'C'), b(1, 'C');
    a += std::to_string(ps.a + 1);
    b += std::to_string(ps.b + 1);
    pairs.push_back({{"a", a}, {"b", b}, {"scale", ps.scale}});
  }
  m["pairs"] = pairs;
  return m;
}

}  // namespace

}  // namespace gen_detail

GenResult generate(const GenOptions& opts) {
  using namespace gen_detail;
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();

  if (opts.rows < 1) throw Error("gen: --rows must be at least 1");
  if (opts.days < 1 || opts.days > 100000) throw Error("gen: --days must be in [1, 100000]");
  if (!(opts.cardinality_scale > 0) || !std::isfinite(opts.cardinality_scale))
    throw Error("gen: --cardinality-scale must be a positive number");
  if (opts.out.empty()) throw Error("gen: no output directory");
  if (opts.threads < 0) throw Error("gen: --threads must be >= 0");

  // Meta's day split: total = q * D + r, the first r days get q + 1 rows.
  const int days = opts.days;
  const uint64_t q = opts.rows / uint64_t(days), rem = opts.rows % uint64_t(days);
  std::vector<uint64_t> day_rows(static_cast<size_t>(days));
  for (int d = 0; d < days; ++d) day_rows[size_t(d)] = q + (uint64_t(d) < rem ? 1 : 0);
  const uint64_t test_rows = (day_rows.back() + 1) / 2;

  // Task t is block t - task_begin[d] of the day d with task_begin[d] <= t < task_begin[d + 1].
  std::vector<uint64_t> task_begin(size_t(days) + 1, 0);
  for (int d = 0; d < days; ++d)
    task_begin[size_t(d) + 1] = task_begin[size_t(d)] + (day_rows[size_t(d)] + kBlockRows - 1) / kBlockRows;
  const uint64_t num_tasks = task_begin.back();
  auto task_at = [&](uint64_t t) {
    int d = int(std::upper_bound(task_begin.begin(), task_begin.end(), t) - task_begin.begin()) - 1;
    uint64_t b = t - task_begin[size_t(d)], first = b * kBlockRows;
    uint64_t n = std::min<uint64_t>(kBlockRows, day_rows[size_t(d)] - first);
    return Task{d, b, first, uint32_t(n)};
  };

  AtomicDir dir(opts.out, OutputOptions{opts.overwrite, "gen", {}});
  const Model model(opts.seed, opts.cardinality_scale);

  int threads = opts.threads > 0 ? opts.threads : int(std::thread::hardware_concurrency());
  threads = std::clamp<int>(threads, 1, 256);
  threads = int(std::min<uint64_t>(uint64_t(threads), num_tasks));
  const size_t window = size_t(2 * threads + 2);

  std::vector<double> test_p(test_rows);
  std::vector<Slot> slots(window);
  std::mutex mu;
  std::condition_variable cv_ready, cv_space;
  std::atomic<uint64_t> next_claim{0};
  uint64_t next_write = 0;  // guarded by mu
  bool failed = false;    // guarded by mu
  std::exception_ptr error;

  auto fail = [&](std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!error) error = e;
      failed = true;
    }
    cv_ready.notify_all();
    cv_space.notify_all();
  };

  auto worker = [&] {
    try {
      for (;;) {
        uint64_t i = next_claim.fetch_add(1);
        if (i >= num_tasks) return;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv_space.wait(lk, [&] { return failed || i < next_write + window; });
          if (failed) return;
        }
        Slot& s = slots[i % window];
        const Task t = task_at(i);
        if (!s.buf) s.buf.reset(new char[size_t(kBlockRows) * kMaxRowBytes]);
        double* tp = t.day == days - 1 ? test_p.data() : nullptr;
        s.len = generate_block(model, opts.seed, t, s.buf.get(), &s.positives, tp, test_rows);
        {
          std::lock_guard<std::mutex> lk(mu);
          s.ready = int64_t(i);
        }
        cv_ready.notify_all();
      }
    } catch (...) {
      fail(std::current_exception());
    }
  };

  std::vector<std::thread> pool;
  pool.reserve(size_t(threads));
  auto join_all = [&] {
    for (auto& th : pool)
      if (th.joinable()) th.join();
  };

  uint64_t bytes = 0, positives = 0, rows_done = 0;
  try {
    for (int k = 0; k < threads; ++k) pool.emplace_back(worker);
    std::unique_ptr<FileWriter> file;
    FileWriter::Options fo;
    // With sync, start write-back every few tens of MB so that the final fsync does not wait for
    // the whole file.
    fo.writeback_every = opts.sync ? uint64_t(32) << 20 : 0;
    int open_day = -1;
    auto open_through = [&](int day) {  // close the current file, create day files up to `day`
      while (open_day < day) {
        if (file) file->close(opts.sync);
        ++open_day;
        file = std::make_unique<FileWriter>(dir.file("day_" + std::to_string(open_day) + ".tsv"), fo);
      }
    };
    auto last_report = t0;
    for (uint64_t i = 0; i < num_tasks; ++i) {
      const Task t = task_at(i);
      Slot& s = slots[i % window];
      check_interrupt();
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_ready.wait(lk, [&] { return failed || s.ready == int64_t(i); });
        if (failed) break;
      }
      open_through(t.day);
      file->write(s.buf.get(), s.len);
      bytes += s.len;
      positives += s.positives;
      rows_done += t.rows;
      {
        std::lock_guard<std::mutex> lk(mu);
        s.ready = -1;
        next_write = i + 1;
      }
      cv_space.notify_all();

      if (opts.progress) {
        auto now = Clock::now();
        if (now - last_report >= std::chrono::milliseconds(500)) {
          last_report = now;
          double el = std::chrono::duration<double>(now - t0).count();
          double mbs = el > 0 ? double(bytes) / 1e6 / el : 0;
          double eta = rows_done > 0 ? el * double(opts.rows - rows_done) / double(rows_done) : -1;
          std::fprintf(stderr, "\rgen: %llu/%llu rows  %.1f MB  %.0f MB/s  ETA %s   ",
                       (unsigned long long)rows_done, (unsigned long long)opts.rows,
                       double(bytes) / 1e6, mbs, human_seconds(eta).c_str());
          std::fflush(stderr);
        }
      }
    }
    join_all();
    if (error) std::rethrow_exception(error);
    open_through(days - 1);
    file->close(opts.sync);
  } catch (...) {
    fail(std::current_exception());
    join_all();
    if (opts.progress) std::fprintf(stderr, "\n");
    std::rethrow_exception(error);
  }

  GenResult res;
  res.rows = rows_done;
  res.bytes = bytes;
  res.ctr = double(positives) / double(rows_done);
  res.oracle_test_auc = auc_of_signed(test_p);
  std::vector<double>().swap(test_p);

  nlohmann::ordered_json truth;
  truth["format"] = "criteo-tsv";
  truth["generator"] = "sluice gen";
  truth["rows"] = opts.rows;
  truth["days"] = days;
  truth["rows_per_day"] = day_rows;
  truth["seed"] = opts.seed;
  truth["cardinality_scale"] = opts.cardinality_scale;
  std::vector<uint64_t> cards(kNumSparse);
  for (int c = 0; c < kNumSparse; ++c) cards[size_t(c)] = model.cardinality(c);
  truth["cardinalities"] = cards;
  truth["bytes"] = bytes;
  truth["positives"] = positives;
  truth["ctr"] = res.ctr;
  truth["test_rows"] = test_rows;
  truth["test_split"] = "first ceil(n/2) rows of the last day";
  if (std::isnan(res.oracle_test_auc)) truth["oracle_test_auc"] = nullptr;
  else truth["oracle_test_auc"] = res.oracle_test_auc;
  truth["model"] = model_json(model);
  {
    FileWriter f(dir.file("truth.json"));
    const std::string text = truth.dump(2) + "\n";
    f.write(text.data(), text.size());
    f.close(opts.sync);
  }
  dir.commit();

  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (opts.progress) {
    std::fprintf(stderr, "\rgen: %llu/%llu rows  %.1f MB  %.0f MB/s  done in %s          \n",
                 (unsigned long long)rows_done, (unsigned long long)opts.rows, double(bytes) / 1e6,
                 res.seconds > 0 ? double(bytes) / 1e6 / res.seconds : 0.0,
                 human_seconds(res.seconds).c_str());
  }
  return res;
}

}  // namespace sluice
