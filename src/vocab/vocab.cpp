#include "sluice/vocab.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <thread>

#include <nlohmann/json.hpp>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"
#include "util/fs_ops.hpp"

namespace sluice {

// ---- large tables ----------------------------------------------------------------------------

namespace detail {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kLargeTable = size_t(4) << 20;

// Blocks freed by tables that grew, kept for the next table that needs the same size (tables grow by
// doubling, so the sizes repeat across the 26 columns). A block from here is neither faulted in nor
// zeroed by the kernel again, and freeing it does not unmap it: unmapping interrupts every core that
// runs one of the process's threads to flush its TLB, and page faults of many threads contend in the
// kernel. At most kKeptMax bytes are kept; large_table_release() frees them (a vocabulary builder
// calls it when it finishes and when it goes).
constexpr size_t kKeptMax = size_t(512) << 20;
std::mutex g_kept_mu;
std::multimap<size_t, void*>* g_kept = nullptr;  // size -> block; never destroyed (tables in statics)
size_t g_kept_bytes = 0;
}  // namespace

void* large_table_alloc(size_t bytes) {
  if (bytes < kLargeTable) return ::operator new(bytes);
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  {
    std::lock_guard<std::mutex> g(g_kept_mu);
    if (g_kept) {
      auto it = g_kept->find(rounded);
      if (it != g_kept->end()) {
        void* p = it->second;
        g_kept->erase(it);
        g_kept_bytes -= rounded;
        return p;
      }
    }
  }
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (!p) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  madvise(p, rounded, MADV_HUGEPAGE);  // a hint: without huge pages the table works the same
#endif
  return p;
}

void large_table_free(void* p, size_t bytes) noexcept {
  if (bytes < kLargeTable) {
    ::operator delete(p);
    return;
  }
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  try {
    std::lock_guard<std::mutex> g(g_kept_mu);
    if (g_kept_bytes + rounded <= kKeptMax) {
      if (!g_kept) g_kept = new std::multimap<size_t, void*>();
      g_kept->emplace(rounded, p);
      g_kept_bytes += rounded;
      return;
    }
  } catch (...) {
  }
  std::free(p);
}

void large_table_release() noexcept {
  std::lock_guard<std::mutex> g(g_kept_mu);
  if (!g_kept) return;
  for (auto& [size, p] : *g_kept) std::free(p);
  g_kept->clear();
  g_kept_bytes = 0;
}

}  // namespace detail

// ---- U32Map -------------------------------------------------------------------------------------

U32Map::U32Map(size_t expect) { reserve(expect); }

void U32Map::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  decltype(slots_) old = std::move(slots_);
  slots_.assign(cap, kEmptySlot);
  mask_ = cap - 1;
  size_ = 0;
  for (const uint64_t s : old) {
    if (s == kEmptySlot) continue;
    bool ins;
    insert(uint32_t(s), uint32_t(s >> 32), &ins);
  }
}

void U32Map::grow() { reserve(std::max<size_t>(16, slots_.size())); }

void U32Map::clear() {
  std::fill(slots_.begin(), slots_.end(), kEmptySlot);
  size_ = 0;
}

uint32_t U32Map::insert(uint32_t key, uint32_t value, bool* inserted) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  uint64_t h = hash(key) & mask_;
  for (;;) {
    const uint64_t s = slots_[h];
    if (s == kEmptySlot) {
      slots_[h] = uint64_t(value) << 32 | key;
      ++size_;
      *inserted = true;
      return value;
    }
    if (uint32_t(s) == key) { *inserted = false; return uint32_t(s >> 32); }
    h = (h + 1) & mask_;
  }
}

bool U32Map::erase(uint32_t key) {
  if (slots_.empty()) return false;
  uint64_t i = hash(key) & mask_;
  for (;;) {
    const uint64_t s = slots_[i];
    if (s == kEmptySlot) return false;
    if (uint32_t(s) == key) break;
    i = (i + 1) & mask_;
  }
  // The hole at i is filled by the next key of the run whose home slot is not after i (cyclically,
  // in (i, j]), until the run ends.
  uint64_t j = i;
  for (;;) {
    j = (j + 1) & mask_;
    const uint64_t s = slots_[j];
    if (s == kEmptySlot) break;
    const uint64_t home = hash(uint32_t(s)) & mask_;
    const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots_[i] = s;
    i = j;
  }
  slots_[i] = kEmptySlot;
  --size_;
  return true;
}

// ---- Vocabulary ---------------------------------------------------------------------------------

void Vocabulary::build_index() {
  for (int c = 0; c < kNumSparse; ++c) {
    index_[c] = U32Map(values[c].size());
    for (size_t i = 0; i < values[c].size(); ++i) {
      bool ins;
      index_[c].insert(values[c][i], uint32_t(i + id_offset), &ins);
    }
  }
}

void Vocabulary::apply(uint32_t* sparse, size_t rows, Unseen unseen, int threads) const {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  const size_t per = std::max<size_t>(4096, (rows + size_t(threads) - 1) / size_t(threads));
  auto work = [&](size_t b, size_t e) {
    // Column by column over blocks of rows. Tables that fit in the cache are probed straight; in
    // larger ones every lookup misses the cache, so the slots are prefetched far enough ahead
    // (kAhead lookups, about one memory latency of work) to keep many misses in flight at once.
    constexpr size_t kBlock = 1024, kAhead = 48;
    constexpr size_t kCachedBytes = size_t(256) << 10;
    for (size_t r0 = b; r0 < e; r0 += kBlock) {
      const size_t r1 = std::min(e, r0 + kBlock);
      for (int c = 0; c < kNumSparse; ++c) {
        const U32Map& m = index_[c];
        const uint32_t missing = unseen_id(c, unseen);
        uint32_t* s = sparse + c;
        if (m.bytes() <= kCachedBytes) {
          for (size_t r = r0; r < r1; ++r) s[r * kNumSparse] = m.find(s[r * kNumSparse], missing);
          continue;
        }
        const size_t ahead = std::min(r1, r0 + kAhead);
        for (size_t r = r0; r < ahead; ++r) __builtin_prefetch(m.slot_address(s[r * kNumSparse]));
        size_t r = r0;
        for (; r + kAhead < r1; ++r) {
          __builtin_prefetch(m.slot_address(s[(r + kAhead) * kNumSparse]));
          s[r * kNumSparse] = m.find(s[r * kNumSparse], missing);
        }
        for (; r < r1; ++r) s[r * kNumSparse] = m.find(s[r * kNumSparse], missing);
      }
    }
  };
  if (threads == 1 || rows <= per) { work(0, rows); return; }
  std::vector<std::thread> ts;
  for (size_t b = 0; b < rows; b += per) ts.emplace_back(work, b, std::min(rows, b + per));
  for (auto& t : ts) t.join();
}

void Vocabulary::save(const std::string& dir) const {
  const std::string vdir = dir + "/vocab";
  fsops::make_dirs(vdir);
  for (int c = 0; c < kNumSparse; ++c) {
    NpyWriter w(vdir + "/C" + std::to_string(c + 1) + ".npy", NpyType::kUint32, 2);
    std::vector<uint32_t> buf;
    const size_t n = values[c].size();
    constexpr size_t kBlock = 1 << 16;
    for (size_t b = 0; b < n; b += kBlock) {
      const size_t e = std::min(n, b + kBlock);
      buf.resize((e - b) * 2);
      for (size_t i = b; i < e; ++i) {
        buf[(i - b) * 2] = values[c][i];
        buf[(i - b) * 2 + 1] = counts[c][i];
      }
      w.append(buf.data(), int64_t(e - b));
    }
    w.finish();
  }
  nlohmann::json meta;
  meta["id_offset"] = id_offset;
  meta["min_freq"] = min_freq;
  std::vector<int64_t> sizes;
  for (int c = 0; c < kNumSparse; ++c) sizes.push_back(table_size(c));
  meta["table_sizes"] = sizes;
  meta["layout"] = "vocab/C<k>.npy: uint32 (n, 2) rows [value, count]; row i has id i + id_offset";
  write_file_atomic(vdir + "/meta.json", meta.dump(2) + "\n");
}

Vocabulary Vocabulary::load(const std::string& dir) {
  const std::string vdir = dir + "/vocab";
  std::ifstream in(vdir + "/meta.json");
  if (!in) throw Error(vdir + "/meta.json: cannot open vocabulary");
  nlohmann::json meta;
  try {
    in >> meta;
  } catch (const std::exception& e) {
    throw Error(vdir + "/meta.json: bad JSON: " + e.what());
  }
  Vocabulary v;
  v.id_offset = meta.value("id_offset", 0u);
  v.min_freq = meta.value("min_freq", 1u);
  for (int c = 0; c < kNumSparse; ++c) {
    int64_t rows = 0;
    const auto data = read_npy<uint32_t>(vdir + "/C" + std::to_string(c + 1) + ".npy", NpyType::kUint32, &rows, 2);
    v.values[c].resize(size_t(rows));
    v.counts[c].resize(size_t(rows));
    for (int64_t i = 0; i < rows; ++i) {
      v.values[c][size_t(i)] = data[size_t(i) * 2];
      v.counts[c][size_t(i)] = data[size_t(i) * 2 + 1];
    }
  }
  v.build_index();
  return v;
}

// ---- VocabBuilder -------------------------------------------------------------------------------

VocabBuilder::VocabBuilder(uint32_t min_freq) : min_freq_(std::max(1u, min_freq)) {}

VocabBuilder::~VocabBuilder() {
  for (int c = 0; c < kNumSparse; ++c) pos_[c] = U32Map();
  detail::large_table_release();
}

void VocabBuilder::merge(int c, const uint32_t* values, const uint32_t* counts, size_t n, uint32_t* positions) {
  U32Map& pos = pos_[c];
  auto& order = order_[c];
  auto& cnt = count_[c];
  thread_local std::vector<uint32_t> scratch;
  if (!positions) {
    scratch.resize(n);
    positions = scratch.data();
  }
  // Two passes, each with its random accesses fetched ahead (a multi-million-entry table misses
  // the cache): the positions (new values appended), then the counts of the values seen before,
  // whose places are known only after the first pass.
  constexpr size_t kAhead = 16;
  const size_t before = order.size();
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) __builtin_prefetch(pos.slot_address(values[i + kAhead]));
    bool inserted;
    const uint32_t p = pos.insert(values[i], uint32_t(order.size()), &inserted);
    positions[i] = p;
    if (inserted) {
      order.push_back(values[i]);
      cnt.push_back(counts[i]);
    }
  }
  uint32_t* cn = cnt.data();
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) __builtin_prefetch(cn + positions[i + kAhead]);
    const uint32_t p = positions[i];
    if (p >= before) continue;  // new: counted when appended
    const uint64_t s = uint64_t(cn[p]) + counts[i];
    cn[p] = s > 0xffffffffull ? 0xffffffffu : uint32_t(s);
  }
}

void VocabBuilder::unmerge(int c, const uint32_t* values, const uint32_t* counts, size_t n,
                           const uint32_t* positions, size_t size_before) {
  U32Map& pos = pos_[c];
  auto& order = order_[c];
  auto& cnt = count_[c];
  for (size_t i = 0; i < n; ++i) {
    const uint32_t p = positions[i];
    if (p >= size_before) {
      pos.erase(values[i]);
    } else if (cnt[p] != 0xffffffffu) {
      cnt[p] -= counts[i];
    }
  }
  order.resize(std::min(order.size(), size_before));
  cnt.resize(std::min(cnt.size(), size_before));
}

Vocabulary VocabBuilder::finish() {
  Vocabulary v;
  v.min_freq = min_freq_;
  v.id_offset = min_freq_ > 1 ? 1 : 0;
  for (int c = 0; c < kNumSparse; ++c) {
    if (min_freq_ <= 1) {
      // Ids are the first-seen positions: the position map is already the lookup index.
      v.values[c] = std::move(order_[c]);
      v.counts[c] = std::move(count_[c]);
      v.index_[c] = std::move(pos_[c]);
      pos_[c] = U32Map();
      continue;
    } else {
      for (size_t i = 0; i < order_[c].size(); ++i) {
        if (count_[c][i] >= min_freq_) {
          v.values[c].push_back(order_[c][i]);
          v.counts[c].push_back(count_[c][i]);
        }
      }
      order_[c].clear();
      count_[c].clear();
    }
    pos_[c] = U32Map();
    v.index_[c] = U32Map(v.values[c].size());
    for (size_t i = 0; i < v.values[c].size(); ++i) {
      bool ins;
      v.index_[c].insert(v.values[c][i], uint32_t(i + v.id_offset), &ins);
    }
  }
  detail::large_table_release();  // the blocks the growing tables left behind
  return v;
}

// ---- OnlineVocab --------------------------------------------------------------------------------

OnlineVocab::OnlineVocab(int64_t capacity) : capacity_(std::max<int64_t>(1, capacity)) {}

OnlineVocab::~OnlineVocab() {
  for (int c = 0; c < kNumSparse; ++c) maps_[c] = U32Map();
  detail::large_table_release();
}

void OnlineVocab::map(uint32_t* sparse, size_t rows) {
  std::lock_guard<std::mutex> lk(mu_);
  const uint32_t last = uint32_t(capacity_ - 1);
  for (size_t r = 0; r < rows; ++r) {
    for (int c = 0; c < kNumSparse; ++c) {
      uint32_t& v = sparse[r * kNumSparse + c];
      U32Map& m = maps_[c];
      const uint32_t id = m.find(v, 0xffffffffu);
      if (id != 0xffffffffu) { v = id; continue; }
      if (int64_t(m.size()) < capacity_ - 1) {
        bool ins;
        v = m.insert(v, uint32_t(m.size()), &ins);
      } else {
        ++overflow_[c];
        v = last;
      }
    }
  }
}

}  // namespace sluice
