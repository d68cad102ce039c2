// Vocabularies: chunked first-seen building against a plain sequential map, min_freq, save/load,
// one-pass online ids, and the hash map underneath.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/cpu/value_pass.hpp"
#include "sluice/engine.hpp"
#include "sluice/io.hpp"
#include "sluice/vocab.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;

namespace {

// rows x 26 values, skewed (a few very common values, a long tail), with the edge values mixed in.
std::vector<uint32_t> random_sparse(std::mt19937_64& rng, size_t rows) {
  std::vector<uint32_t> v(rows * kNumSparse);
  for (size_t r = 0; r < rows; ++r) {
    for (int c = 0; c < kNumSparse; ++c) {
      const uint64_t k = rng() % 100;
      uint32_t x;
      if (k < 5) x = 0;
      else if (k < 7) x = 0xffffffffu;
      else if (k < 9) x = 0xfffffffeu;
      else if (k < 50) x = uint32_t(rng() % (4 + uint64_t(c) * 3));            // common
      else if (k < 80) x = uint32_t(rng() % 500) * 2654435761u;                  // medium
      else x = uint32_t(rng());                                                  // mostly unique
      v[r * kNumSparse + size_t(c)] = x;
    }
  }
  return v;
}

// Plain sequential first-seen: per column, values in order of first appearance and their counts.
struct SeqVocab {
  std::vector<uint32_t> order[kNumSparse];
  std::vector<uint32_t> count[kNumSparse];
  std::map<uint32_t, size_t> pos[kNumSparse];
  void add(const std::vector<uint32_t>& sparse) {
    for (size_t i = 0; i < sparse.size(); ++i) {
      const int c = int(i % kNumSparse);
      auto it = pos[c].find(sparse[i]);
      if (it == pos[c].end()) {
        pos[c][sparse[i]] = order[c].size();
        order[c].push_back(sparse[i]);
        count[c].push_back(1);
      } else {
        ++count[c][it->second];
      }
    }
  }
  // The id of value v in column c under min_freq k (k <= 1: plain first-seen).
  uint32_t id(int c, uint32_t v, uint32_t k) {
    const size_t p = pos[c].at(v);
    if (k <= 1) return uint32_t(p);
    if (cached_k != k) {  // ids under min_freq k: kept values numbered from 1 in order, rare ones 0
      cached_k = k;
      for (int cc = 0; cc < kNumSparse; ++cc) {
        ids[cc].assign(order[cc].size(), 0);
        uint32_t next = 1;
        for (size_t i = 0; i < order[cc].size(); ++i)
          if (count[cc][i] >= k) ids[cc][i] = next++;
      }
    }
    return ids[c][p];
  }
  uint32_t cached_k = 0;
  std::vector<uint32_t> ids[kNumSparse];
};

// Merges `sparse` into the builder as random chunks, each with its own distinct-in-order list.
void merge_in_random_chunks(std::mt19937_64& rng, const std::vector<uint32_t>& sparse, VocabBuilder* b) {
  const size_t rows = sparse.size() / kNumSparse;
  size_t r0 = 0;
  while (r0 < rows) {
    const size_t n = std::min(rows - r0, size_t(rng() % 300));  // empty chunks too
    for (int c = 0; c < kNumSparse; ++c) {
      std::vector<uint32_t> vals, cnts;
      std::unordered_map<uint32_t, size_t> pos;
      for (size_t r = r0; r < r0 + n; ++r) {
        const uint32_t v = sparse[r * kNumSparse + size_t(c)];
        auto it = pos.find(v);
        if (it == pos.end()) {
          pos[v] = vals.size();
          vals.push_back(v);
          cnts.push_back(1);
        } else {
          ++cnts[it->second];
        }
      }
      b->merge(c, vals.data(), cnts.data(), vals.size());
    }
    r0 += n;
  }
}

TEST(Vocab, BuilderEqualsSequentialFirstSeen) {
  for (uint32_t min_freq : {0u, 1u, 2u, 3u}) {
    for (int seed = 0; seed < 2; ++seed) {
      std::mt19937_64 rng(uint64_t(seed) * 31 + min_freq);
      const auto sparse = random_sparse(rng, 2000);
      SeqVocab seq;
      seq.add(sparse);
      VocabBuilder b(min_freq);
      merge_in_random_chunks(rng, sparse, &b);
      const Vocabulary v = b.finish();
      const uint32_t k = std::max(1u, min_freq);
      EXPECT_EQ(v.min_freq, k);
      EXPECT_EQ(v.id_offset, k > 1 ? 1u : 0u);
      for (int c = 0; c < kNumSparse; ++c) {
        std::vector<uint32_t> want_vals, want_counts;
        for (size_t i = 0; i < seq.order[c].size(); ++i) {
          if (seq.count[c][i] >= k) {
            want_vals.push_back(seq.order[c][i]);
            want_counts.push_back(seq.count[c][i]);
          }
        }
        ASSERT_EQ(v.values[c], want_vals) << "C" << c + 1 << " min_freq " << min_freq;
        ASSERT_EQ(v.counts[c], want_counts) << "C" << c + 1 << " min_freq " << min_freq;
        EXPECT_EQ(v.table_size(c), int64_t(want_vals.size()) + (k > 1 ? 1 : 0));
        if (k > 1) {
          EXPECT_LT(want_vals.size(), seq.order[c].size()) << "the data should have rare values";
        }
      }
      // Ids through apply() (threads 1 and 4) and lookup().
      for (int threads : {1, 4}) {
        auto ids = sparse;
        v.apply(ids.data(), ids.size() / kNumSparse, Vocabulary::Unseen::kZero, threads);
        for (size_t i = 0; i < ids.size(); ++i) {
          const int c = int(i % kNumSparse);
          ASSERT_EQ(ids[i], seq.id(c, sparse[i], k)) << "i " << i << " min_freq " << min_freq;
        }
      }
      for (int c = 0; c < kNumSparse; ++c)
        for (size_t i = 0; i < v.values[c].size(); ++i) ASSERT_EQ(v.lookup(c, v.values[c][i], 999), i + v.id_offset);
    }
  }
}

TEST(Vocab, HandExampleWithMinFreq) {
  // Column 0 sees 5 5 7 9 7 5 0 ; min_freq 2 keeps 5 (x3) and 7 (x2): ids 5->1, 7->2, 9->0, 0->0.
  const uint32_t col0[] = {5, 5, 7, 9, 7, 5, 0};
  std::vector<uint32_t> sparse(7 * kNumSparse, 42);
  for (int r = 0; r < 7; ++r) sparse[size_t(r) * kNumSparse] = col0[r];
  for (uint32_t k : {1u, 2u}) {
    VocabBuilder b(k);
    // chunk 1: rows 0..2, chunk 2: rows 3..6
    const uint32_t v1[] = {5, 7}, c1[] = {2, 1}, v2[] = {9, 7, 5, 0}, c2[] = {1, 1, 1, 1};
    b.merge(0, v1, c1, 2);
    b.merge(0, v2, c2, 4);
    const uint32_t v42[] = {42}, c3[] = {3}, c4[] = {4};
    for (int c = 1; c < kNumSparse; ++c) {
      b.merge(c, v42, c3, 1);
      b.merge(c, v42, c4, 1);
    }
    const Vocabulary v = b.finish();
    auto ids = sparse;
    v.apply(ids.data(), 7, Vocabulary::Unseen::kZero, 1);
    std::vector<uint32_t> got0;
    for (int r = 0; r < 7; ++r) got0.push_back(ids[size_t(r) * kNumSparse]);
    if (k == 1) {
      EXPECT_EQ(v.values[0], (std::vector<uint32_t>{5, 7, 9, 0}));
      EXPECT_EQ(v.counts[0], (std::vector<uint32_t>{3, 2, 1, 1}));
      EXPECT_EQ(got0, (std::vector<uint32_t>{0, 0, 1, 2, 1, 0, 3}));
      EXPECT_EQ(ids[1], 0u);
      EXPECT_EQ(v.table_size(0), 4);
    } else {
      EXPECT_EQ(v.values[0], (std::vector<uint32_t>{5, 7}));
      EXPECT_EQ(got0, (std::vector<uint32_t>{1, 1, 2, 0, 2, 1, 0}));
      EXPECT_EQ(ids[1], 1u);  // 42, seen 7 times
      EXPECT_EQ(v.table_size(0), 3);
    }
    EXPECT_EQ(v.table_size(1), int64_t(k == 1 ? 1 : 2));
    EXPECT_EQ(v.unseen_id(0, Vocabulary::Unseen::kExtraId), uint32_t(v.table_size(0)));
    EXPECT_EQ(v.unseen_id(0, Vocabulary::Unseen::kZero), 0u);
  }
}

TEST(Vocab, BuilderFromEngineChunksEqualsSequential) {
  // The engine's own per-chunk distinct lists (many small chunks, several threads), merged in order.
  const std::string text = read_file(sample_path());
  TempDir dir("vocab");
  write_file(dir / "a.tsv", text);
  EngineOptions o;
  o.threads = 3;
  o.block_bytes = 1024;
  o.ids = IdMode::kDistinct;
  o.max_ind_range = 50;  // few distinct values: many repeats across chunks
  CpuEngine engine(o);
  VocabBuilder b(2);
  std::vector<uint32_t> all;
  run_files(engine, {dir / "a.tsv", dir / "a.tsv"}, [&](const ChunkView& ch) {
    for (int c = 0; c < kNumSparse; ++c)
      b.merge(c, ch.distinct[c].data(), ch.distinct_count[c].data(), ch.distinct[c].size());
    all.insert(all.end(), ch.sparse, ch.sparse + ch.rows * kNumSparse);
    return true;
  });
  ASSERT_EQ(all.size(), 400u * kNumSparse);
  SeqVocab seq;
  seq.add(all);
  const Vocabulary v = b.finish();
  for (int c = 0; c < kNumSparse; ++c) {
    std::vector<uint32_t> want;
    for (size_t i = 0; i < seq.order[c].size(); ++i)
      if (seq.count[c][i] >= 2) want.push_back(seq.order[c][i]);
    EXPECT_EQ(v.values[c], want) << "C" << c + 1;
  }
}

TEST(Vocab, SaveLoadRoundTrip) {
  TempDir dir("vocab");
  std::mt19937_64 rng(5);
  const auto sparse = random_sparse(rng, 2000);
  for (uint32_t k : {1u, 3u}) {
    VocabBuilder b(k);
    merge_in_random_chunks(rng, sparse, &b);
    const Vocabulary v = b.finish();
    const std::string out = dir / ("v" + std::to_string(k));
    v.save(out);
    for (int c = 1; c <= kNumSparse; ++c) EXPECT_TRUE(fs::exists(out + "/vocab/C" + std::to_string(c) + ".npy"));
    const Vocabulary w = Vocabulary::load(out);
    EXPECT_EQ(w.id_offset, v.id_offset);
    EXPECT_EQ(w.min_freq, v.min_freq);
    for (int c = 0; c < kNumSparse; ++c) {
      EXPECT_EQ(w.values[c], v.values[c]);
      EXPECT_EQ(w.counts[c], v.counts[c]);
      EXPECT_EQ(w.table_size(c), v.table_size(c));
    }
    auto a = sparse, bb = sparse;
    v.apply(a.data(), 2000, Vocabulary::Unseen::kExtraId, 2);
    w.apply(bb.data(), 2000, Vocabulary::Unseen::kExtraId, 2);
    EXPECT_EQ(a, bb);
    // The files themselves: C1.npy is uint32 (n, 2) of [value, count]; meta.json has the sizes.
    int64_t rows = 0;
    const auto c1 = read_npy<uint32_t>(out + "/vocab/C1.npy", NpyType::kUint32, &rows, 2);
    ASSERT_EQ(rows, int64_t(v.values[0].size()));
    for (int64_t i = 0; i < rows; ++i) {
      EXPECT_EQ(c1[size_t(i) * 2], v.values[0][size_t(i)]);
      EXPECT_EQ(c1[size_t(i) * 2 + 1], v.counts[0][size_t(i)]);
    }
    std::ifstream in(out + "/vocab/meta.json");
    const nlohmann::json meta = nlohmann::json::parse(in);
    EXPECT_EQ(meta.at("id_offset").get<uint32_t>(), v.id_offset);
    EXPECT_EQ(meta.at("min_freq").get<uint32_t>(), k);
    ASSERT_EQ(meta.at("table_sizes").size(), size_t(kNumSparse));
    for (int c = 0; c < kNumSparse; ++c) EXPECT_EQ(meta.at("table_sizes")[size_t(c)].get<int64_t>(), v.table_size(c));
  }
  // An empty vocabulary round-trips too.
  Vocabulary empty;
  empty.build_index();
  empty.save(dir / "empty");
  const Vocabulary e2 = Vocabulary::load(dir / "empty");
  for (int c = 0; c < kNumSparse; ++c) EXPECT_TRUE(e2.values[c].empty());
  EXPECT_THROW(Vocabulary::load(dir / "nothing_here"), Error);
}

TEST(Vocab, OnlineEqualsTwoPass) {
  std::mt19937_64 rng(9);
  const auto sparse = random_sparse(rng, 4000);
  SeqVocab seq;
  seq.add(sparse);
  size_t max_distinct = 0;
  for (int c = 0; c < kNumSparse; ++c) max_distinct = std::max(max_distinct, seq.order[c].size());
  OnlineVocab ov(int64_t(max_distinct) + 1);  // large enough for every column
  auto ids = sparse;
  // In batches of random sizes.
  size_t r0 = 0;
  while (r0 < 4000) {
    const size_t n = std::min<size_t>(4000 - r0, rng() % 500);
    ov.map(ids.data() + r0 * kNumSparse, n);
    r0 += n;
  }
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], seq.id(int(i % kNumSparse), sparse[i], 1)) << i;
  for (int c = 0; c < kNumSparse; ++c) {
    EXPECT_EQ(ov.overflowed(c), 0);
    EXPECT_EQ(ov.size(c), seq.order[c].size());
  }
}

TEST(Vocab, OnlineOverflowMapsToLastId) {
  // Column 0 sees 10, 11, 12, 13, 14, 10, 15 with capacity 4: ids 0, 1, 2, then 3 for every new value.
  const uint32_t col0[] = {10, 11, 12, 13, 14, 10, 15, 12};
  const uint32_t want[] = {0, 1, 2, 3, 3, 0, 3, 2};
  std::vector<uint32_t> s(8 * kNumSparse, 0);
  for (int r = 0; r < 8; ++r) s[size_t(r) * kNumSparse] = col0[r];
  OnlineVocab ov(4);
  ov.map(s.data(), 8);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(s[size_t(r) * kNumSparse], want[r]) << r;
  EXPECT_EQ(ov.overflowed(0), 3);  // 13, 14, 15
  EXPECT_EQ(ov.size(0), 3u);
  EXPECT_EQ(ov.overflowed(1), 0);
  EXPECT_EQ(s[1], 0u);
  // Random data: the first capacity-1 distinct values keep their two-pass ids, the rest get capacity-1.
  std::mt19937_64 rng(10);
  const auto sparse = random_sparse(rng, 1000);
  SeqVocab seq;
  seq.add(sparse);
  const int64_t cap = 50;
  OnlineVocab small(cap);
  auto ids = sparse;
  small.map(ids.data(), 1000);
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t two_pass = seq.id(int(i % kNumSparse), sparse[i], 1);
    ASSERT_EQ(ids[i], std::min<uint32_t>(two_pass, uint32_t(cap - 1))) << i;
  }
  // capacity 1 (or less): everything is id 0.
  OnlineVocab one(0);
  EXPECT_EQ(one.capacity(), 1);
  auto z = sparse;
  one.map(z.data(), 1000);
  for (uint32_t v : z) ASSERT_EQ(v, 0u);
}

TEST(Vocab, OnlineConcurrentCallsAgree) {
  std::mt19937_64 rng(12);
  const auto sparse = random_sparse(rng, 2000);
  SeqVocab seq;
  seq.add(sparse);
  OnlineVocab ov(1 << 20);
  std::vector<std::vector<uint32_t>> out(4, sparse);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) ts.emplace_back([&, t] { ov.map(out[size_t(t)].data(), 2000); });
  for (auto& t : ts) t.join();
  for (int t = 0; t < 4; ++t)
    for (size_t i = 0; i < sparse.size(); ++i) ASSERT_EQ(out[size_t(t)][i], seq.id(int(i % kNumSparse), sparse[i], 1));
}

// Large tables reuse the blocks that tables which grew left behind: a map built in a block that
// still holds another map's slots finds none of them, and the block is reused (same address).
TEST(Vocab, LargeTablesReuseFreedBlocksClean) {
  const size_t n = size_t(1) << 19;  // 2^20 slots, 8 MiB: a large table
  detail::large_table_release();      // no block of that size kept from elsewhere
  const void* first_block = nullptr;
  {
    U32Map a(n);
    bool ins;
    for (uint32_t k = 0; k < n; ++k) a.insert(k * 2 + 1, k, &ins);
    first_block = a.slot_address(1);
    ASSERT_EQ(a.find(7, 99), 3u);
  }
  U32Map b(n);
  bool ins;
  for (uint32_t k = 0; k < 1000; ++k) b.insert(k * 2, k, &ins);  // even keys only
  for (uint32_t k = 0; k < n; k += 97) ASSERT_EQ(b.find(k * 2 + 1, 0xffffffffu), 0xffffffffu) << k;
  for (uint32_t k = 0; k < 1000; ++k) ASSERT_EQ(b.find(k * 2, 0xffffffffu), k);
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(b.slot_address(1), first_block) << "the block was not reused";
  detail::large_table_release();
}

TEST(Vocab, U32Map) {
  U32Map m;
  std::mt19937_64 rng(13);
  std::unordered_map<uint32_t, uint32_t> ref;
  std::vector<uint32_t> keys = {0u, 1u, 0xfffffffeu, 0xffffffffu, 0x80000000u, 0x7fffffffu};
  for (int i = 0; i < 200000; ++i) keys.push_back(uint32_t(rng()));
  for (int i = 0; i < 1000; ++i) keys.push_back(uint32_t(i) << 20);  // keys that differ only in high bits
  for (int i = 0; i < 1000; ++i) keys.push_back(uint32_t(i));        // and only in low bits
  for (uint32_t k : keys) {
    bool inserted = false;
    const uint32_t val = uint32_t(ref.size());
    const uint32_t got = m.insert(k, val, &inserted);
    auto it = ref.find(k);
    if (it == ref.end()) {
      ASSERT_TRUE(inserted) << k;
      ASSERT_EQ(got, val);
      ref[k] = val;
    } else {
      ASSERT_FALSE(inserted) << k;
      ASSERT_EQ(got, it->second);
    }
  }
  EXPECT_EQ(m.size(), ref.size());
  for (const auto& [k, v] : ref) ASSERT_EQ(m.find(k, 0xffffffffu), v) << k;
  EXPECT_EQ(m.find(0, 99), 0u);
  EXPECT_EQ(m.find(0xfffffffeu, 99), 2u);
  EXPECT_EQ(m.find(0xffffffffu, 99), 3u);
  // Absent keys.
  for (int i = 0; i < 10000; ++i) {
    const uint32_t k = uint32_t(rng());
    if (!ref.count(k)) {
      ASSERT_EQ(m.find(k, 12345), 12345u);
    }
  }
  // reserve() keeps the contents; clear() empties.
  m.reserve(1 << 20);
  EXPECT_EQ(m.size(), ref.size());
  for (const auto& [k, v] : ref) ASSERT_EQ(m.find(k, 0xffffffffu), v);
  m.clear();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.find(0, 99), 99u);
  EXPECT_EQ(m.find(0xfffffffeu, 99), 99u);
  bool ins = false;
  EXPECT_EQ(m.insert(0xfffffffeu, 0xfffffffeu, &ins), 0xfffffffeu);  // the largest storable value
  EXPECT_TRUE(ins);
  EXPECT_EQ(m.find(0xfffffffeu, 0), 0xfffffffeu);
}

// erase() against a plain map: random inserts and erases in a table small enough that probe runs
// are long and wrap around its end, then every key found or absent as the map says.
TEST(Vocab, U32MapErase) {
  std::mt19937_64 rng(21);
  for (int round = 0; round < 20; ++round) {
    U32Map m;
    std::unordered_map<uint32_t, uint32_t> ref;
    const uint32_t key_range = round % 2 ? 64 : 100000;  // few keys: many repeats and erases of erased keys
    for (int i = 0; i < 20000; ++i) {
      const uint32_t k = uint32_t(rng() % key_range) * (round % 3 == 0 ? 1u : 0x10001u);
      if (rng() % 3 == 0) {
        const bool had = ref.erase(k) > 0;
        ASSERT_EQ(m.erase(k), had) << k;
      } else {
        bool ins = false;
        const uint32_t v = uint32_t(i);
        const uint32_t got = m.insert(k, v, &ins);
        auto it = ref.find(k);
        ASSERT_EQ(ins, it == ref.end());
        if (ins) ref[k] = v;
        ASSERT_EQ(got, ref[k]);
      }
      ASSERT_EQ(m.size(), ref.size());
    }
    for (const auto& [k, v] : ref) ASSERT_EQ(m.find(k, 0xffffffffu), v) << k;
    for (uint32_t k = 0; k < 200; ++k) {
      if (!ref.count(k)) {
        ASSERT_EQ(m.find(k, 7u), 7u);
      }
    }
  }
  U32Map empty;
  EXPECT_FALSE(empty.erase(5));
}

// unmerge() takes merges back newest first: after merging chunks A, B, C and taking back C and B,
// the builder equals one that merged A alone (values, counts, positions), and merging B and C again
// gives the positions they got the first time. Also after the tables grew in between.
TEST(Vocab, BuilderUnmergeRestores) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 6; ++round) {
    const size_t rows = round < 3 ? 200 : 20000;  // the large rounds make tables grow within B and C
    std::vector<std::vector<uint32_t>> chunks;
    for (int i = 0; i < 3; ++i) chunks.push_back(random_sparse(rng, rows));
    auto lists = [&](const std::vector<uint32_t>& sp) {
      ParsedChunk c;
      c.rows = int64_t(sp.size() / kNumSparse);
      c.sparse = sp;
      detail::collect_distinct(&c);
      return c;
    };
    std::vector<ParsedChunk> parsed;
    for (const auto& c : chunks) parsed.push_back(lists(c));
    VocabBuilder b, only_a;
    std::vector<uint32_t> pos[3][kNumSparse];
    size_t before[3][kNumSparse];
    for (int i = 0; i < 3; ++i)
      for (int col = 0; col < kNumSparse; ++col) {
        const ParsedChunk& c = parsed[size_t(i)];
        pos[i][col].resize(c.distinct[col].size());
        before[i][col] = b.size(col);
        b.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size(), pos[i][col].data());
        if (i == 0) only_a.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
      }
    for (int i = 2; i >= 1; --i)
      for (int col = 0; col < kNumSparse; ++col) {
        const ParsedChunk& c = parsed[size_t(i)];
        b.unmerge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size(),
                  pos[i][col].data(), before[i][col]);
      }
    for (int col = 0; col < kNumSparse; ++col) {
      ASSERT_EQ(b.size(col), only_a.size(col));
      const ParsedChunk& c = parsed[1];
      for (uint32_t v : c.distinct[col]) ASSERT_EQ(b.position(col, v), only_a.position(col, v)) << v;
    }
    for (int i = 1; i < 3; ++i)
      for (int col = 0; col < kNumSparse; ++col) {
        const ParsedChunk& c = parsed[size_t(i)];
        std::vector<uint32_t> again(c.distinct[col].size());
        b.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size(), again.data());
        ASSERT_EQ(again, pos[i][col]) << "round " << round << " chunk " << i << " column " << col;
      }
    Vocabulary got = b.finish();
    VocabBuilder all;
    for (const auto& c : parsed)
      for (int col = 0; col < kNumSparse; ++col)
        all.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
    const Vocabulary want = all.finish();
    for (int col = 0; col < kNumSparse; ++col) {
      ASSERT_EQ(got.values[col], want.values[col]);
      ASSERT_EQ(got.counts[col], want.counts[col]);
    }
  }
}

}  // namespace

// Tables past the cache size take apply()'s prefetching path, small ones the plain one; both give
// lookup()'s ids, for values in the vocabulary and outside it, over rows in several row blocks
// (and a tail shorter than the prefetch distance), and on huge-page table memory.
TEST(Vocab, ApplyOnLargeTablesEqualsLookup) {
  std::mt19937_64 rng(3);
  Vocabulary v;
  for (int c = 0; c < kNumSparse; ++c) {
    const size_t n = c % 3 == 0 ? 300000 : (c % 3 == 1 ? 5000 : 3);
    for (size_t i = 0; i < n; ++i) v.values[c].push_back(uint32_t(rng()) | 1u);  // odd: even values are unseen
    v.counts[c].assign(v.values[c].size(), 1);
  }
  v.build_index();
  EXPECT_GT(v.index(0).bytes(), size_t(4) << 20);
  for (size_t rows : {size_t(1), size_t(47), size_t(1024 * 3 + 17)}) {
    std::vector<uint32_t> sparse(rows * kNumSparse);
    for (size_t i = 0; i < sparse.size(); ++i) {
      const int c = int(i % kNumSparse);
      sparse[i] = rng() % 4 == 0 ? uint32_t(rng()) & ~1u : v.values[c][size_t(rng() % v.values[c].size())];
    }
    for (const auto unseen : {Vocabulary::Unseen::kZero, Vocabulary::Unseen::kExtraId}) {
      auto ids = sparse;
      v.apply(ids.data(), rows, unseen, 1);
      for (size_t i = 0; i < ids.size(); ++i) {
        const int c = int(i % kNumSparse);
        ASSERT_EQ(ids[i], v.lookup(c, sparse[i], v.unseen_id(c, unseen))) << "rows " << rows << " i " << i;
      }
    }
  }
}
