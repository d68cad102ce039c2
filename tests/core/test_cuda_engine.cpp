// The cuda engine against the cpu engine: the same bytes for every option and input kind. Needs a
// CUDA GPU (skipped without one); the row functions the kernels call are tested on the host below
// in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "sluice/engine.hpp"
#include "sluice/prep.hpp"
#include "test_util.hpp"

#include "source/blocks.hpp"

#if defined(SLUICE_HAVE_CUDA)
#include <cuda_runtime.h>

#include "engine/cuda/batch_copy.hpp"
#include "engine/cuda/detail/block_pipeline.hpp"
#include "engine/cuda/detail/compact.hpp"
#include "engine/cuda/detail/row_ops.hpp"
#endif

using namespace sluice;
using namespace sluice_test;

namespace {

bool bitwise_equal(const Collected& a, const Collected& b, std::string* why) {
  if (a.rows != b.rows) {
    *why = "rows " + std::to_string(a.rows) + " vs " + std::to_string(b.rows);
    return false;
  }
  if (a.labels != b.labels) *why = "labels differ";
  else if (!same_bits(a.dense, b.dense)) *why = "dense values differ";
  else if (a.dense_int != b.dense_int) *why = "dense ints differ";
  else if (a.sparse != b.sparse) {
    for (size_t k = 0; k < a.sparse.size(); ++k) {
      if (a.sparse[k] != b.sparse[k]) {
        *why = "sparse differs at row " + std::to_string(k / 26) + " C" + std::to_string(k % 26 + 1) + ": " +
               std::to_string(a.sparse[k]) + " vs " + std::to_string(b.sparse[k]);
        break;
      }
    }
  } else {
    return true;
  }
  return false;
}

bool have_gpu() {
  std::string why;
  return cuda_device_available(&why);
}

#define REQUIRE_GPU()                                         \
  do {                                                        \
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU is usable"; \
  } while (0)

struct EngineRun {
  Collected cols;
  EngineStats stats;
  std::string error;
  Vocabulary vocab;
};

EngineRun run(const std::string& engine, EngineOptions o, const std::vector<std::string>& inputs) {
  EngineRun r;
  try {
    std::unique_ptr<Engine> e = make_engine(engine, o);
    r.stats = run_files(*e, inputs, [&](const ChunkView& c) {
      if (c.memory == MemoryKind::kDevice) throw std::runtime_error("device chunk in a host test");
      r.cols.add(c);
      return true;
    });
    if (o.ids == IdMode::kFirstSeen) r.vocab = e->take_vocabulary();
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

void expect_same(const EngineRun& cpu, const EngineRun& gpu, const std::string& what) {
  EXPECT_EQ(cpu.error, gpu.error) << what;
  if (!cpu.error.empty()) return;
  std::string why;
  EXPECT_TRUE(bitwise_equal(cpu.cols, gpu.cols, &why)) << what << ": " << why;
  EXPECT_EQ(cpu.stats.rows, gpu.stats.rows) << what;
  EXPECT_EQ(cpu.stats.rows_skipped, gpu.stats.rows_skipped) << what;
  EXPECT_EQ(cpu.stats.bytes, gpu.stats.bytes) << what;
  EXPECT_EQ(cpu.stats.rows_per_file, gpu.stats.rows_per_file) << what;
  ASSERT_EQ(cpu.stats.bad_rows.size(), gpu.stats.bad_rows.size()) << what;
  for (size_t i = 0; i < cpu.stats.bad_rows.size(); ++i) {
    EXPECT_EQ(cpu.stats.bad_rows[i].file, gpu.stats.bad_rows[i].file) << what;
    EXPECT_EQ(cpu.stats.bad_rows[i].line, gpu.stats.bad_rows[i].line) << what;
    EXPECT_EQ(cpu.stats.bad_rows[i].reason, gpu.stats.bad_rows[i].reason) << what;
  }
  for (int c = 0; c < kNumSparse; ++c) {
    EXPECT_EQ(cpu.vocab.values[c], gpu.vocab.values[c]) << what << " vocabulary of C" << c + 1;
    EXPECT_EQ(cpu.vocab.counts[c], gpu.vocab.counts[c]) << what << " counts of C" << c + 1;
  }
  EXPECT_EQ(cpu.vocab.id_offset, gpu.vocab.id_offset) << what;
}

EngineOptions base(size_t block, uint64_t modulo = 0) {
  EngineOptions o;
  o.threads = 2;
  o.block_bytes = block;
  o.max_ind_range = modulo;
  return o;
}

// ---- host tests of the functions the kernels run -----------------------------------------------

#if defined(SLUICE_HAVE_CUDA)
TEST(CudaRowOps, LineChecksAndParsingAgreeWithTheReference) {
  std::vector<std::string> lines;
  RowGen gen(41);
  for (int i = 0; i < 300; ++i) lines.push_back(gen.row());
  for (const BadKind& k : kBadKinds) lines.push_back(k.make(gen.row()));
  lines.push_back(gen.row() + "\r");
  for (const std::string& l : lines) {
    RawRow raw;
    int ref_field = -1;
    const RowError ref = parse_row_reference(l.data(), l.data() + l.size(), &raw, &ref_field);
    const RowError line_level = cuda_detail::check_line(l.data(), l.data() + l.size());
    // The line check passes exactly the lines whose reference error is not a line-level one.
    const bool line_error = ref == RowError::kEmptyLine || ref == RowError::kNulByte || ref == RowError::kFieldCount;
    EXPECT_EQ(line_level != RowError::kOk, line_error) << l;
    if (line_error) {
      EXPECT_EQ(line_level, ref) << l;
      continue;
    }
    for (bool clamped : {false, true}) {
      for (uint64_t modulo : {uint64_t(0), uint64_t(977)}) {
        cuda_detail::RowOut out;
        int field = -1;
        const RowError e = cuda_detail::parse_line(l.data(), l.data() + l.size(), clamped, modulo, &out, &field);
        ASSERT_EQ(e, ref) << l;
        EXPECT_EQ(field, ref_field) << l;
        if (e != RowError::kOk) continue;
        EXPECT_EQ(out.label, raw.label);
        for (int i = 0; i < kNumDense; ++i) {
          if (clamped) EXPECT_EQ(out.dense_int[i], clamp_dense_int32(raw.ints[i]));
          else {
            const float want = dense_value(raw.ints[i]);
            EXPECT_EQ(std::memcmp(&out.dense[i], &want, 4), 0);
          }
        }
        for (int j = 0; j < kNumSparse; ++j) EXPECT_EQ(out.sparse[j], apply_modulo(raw.cats[j], modulo));
      }
    }
  }
}

TEST(CudaRowOps, BinaryRows) {
  int32_t v[kDlrmBinRowInts];
  for (int i = 0; i < kDlrmBinRowInts; ++i) v[i] = i * 1000 - 7000;
  v[0] = 1;
  cuda_detail::RowOut out;
  int field = 0;
  ASSERT_EQ(cuda_detail::parse_binary_row(v, false, 0, &out, &field), RowError::kOk);
  EXPECT_EQ(out.label, 1);
  EXPECT_EQ(out.dense[0], 0.0f);  // -6000: Neg2Zero
  EXPECT_EQ(out.dense[12], dense_value(v[13]));
  EXPECT_EQ(out.sparse[25], uint32_t(v[39]));
  ASSERT_EQ(cuda_detail::parse_binary_row(v, true, 7, &out, &field), RowError::kOk);
  EXPECT_EQ(out.dense_int[0], 0);
  EXPECT_EQ(out.dense_int[12], v[13]);
  EXPECT_EQ(out.sparse[0], uint32_t(v[14]) % 7);
  v[0] = 2;
  EXPECT_EQ(cuda_detail::parse_binary_row(v, false, 0, &out, &field), RowError::kBadLabel);
  EXPECT_EQ(field, 0);
}
#endif

// ---- the engine on a GPU ---------------------------------------------------------------------------

#if defined(SLUICE_HAVE_CUDA)
// The ordered compaction whose count lives on the GPU, against std::copy_if: every density, limits at
// and around tile edges, a limit past the bound, a poisoned output.
TEST(CudaCompact, MatchesTheHostReference) {
  REQUIRE_GPU();
  const uint64_t tile = 4096, bound = 5 * tile + 17;
  cuda_detail::CompactScratch scratch(bound);
  uint8_t* d_flags = nullptr;
  uint32_t *d_out = nullptr, *d_limit = nullptr, *d_selected = nullptr;
  ASSERT_EQ(cudaMalloc(&d_flags, bound), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, bound * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_limit, 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_selected, 4), cudaSuccess);
  std::mt19937_64 rng(7);
  for (double density : {0.0, 0.001, 0.3, 0.999, 1.0}) {
    std::vector<uint8_t> flags(bound);
    std::bernoulli_distribution on(density);
    for (auto& f : flags) f = on(rng) ? uint8_t(1 + rng() % 255) : 0;
    ASSERT_EQ(cudaMemcpy(d_flags, flags.data(), bound, cudaMemcpyHostToDevice), cudaSuccess);
    for (uint64_t limit : {uint64_t(0), uint64_t(1), tile - 1, tile, tile + 1, 3 * tile + 255, bound - 1, bound,
                           bound + 1000}) {
      const uint32_t lim = uint32_t(limit), poison = 0xFFFFFFFFu;
      ASSERT_EQ(cudaMemcpy(d_limit, &lim, 4, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemset(d_out, 0xFF, bound * 4), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_selected, &poison, 4, cudaMemcpyHostToDevice), cudaSuccess);
      cuda_detail::compact_nonzero(d_flags, d_limit, bound, d_out, d_selected, scratch, cudaStream_t(0));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<uint32_t> want;
      for (uint64_t i = 0; i < std::min(limit, bound); ++i)
        if (flags[i]) want.push_back(uint32_t(i));
      uint32_t got_n = 0;
      ASSERT_EQ(cudaMemcpy(&got_n, d_selected, 4, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(got_n, want.size()) << "density " << density << " limit " << limit;
      std::vector<uint32_t> got(bound);
      ASSERT_EQ(cudaMemcpy(got.data(), d_out, bound * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin())) << "density " << density << " limit " << limit;
      // Nothing written past the selection.
      EXPECT_TRUE(std::all_of(got.begin() + long(want.size()), got.end(), [](uint32_t v) { return v == 0xFFFFFFFFu; }));
    }
  }
  cudaFree(d_flags);
  cudaFree(d_out);
  cudaFree(d_limit);
  cudaFree(d_selected);
}

// One block's kernels on text placed at every start offset within a 16-byte word of its buffer, the
// buffer around it filled with '\n' (a pass reading outside the block would find more lines): the
// same line, row and bad-line counts and the same rows as the reference parser.
TEST(CudaBlockPipeline, AnyStartInItsBufferGivesTheReferenceRows) {
  REQUIRE_GPU();
  std::string text = read_file(sample_path());
  RowGen gen(23);
  for (int i = 0; i < 300; ++i) {
    if (i % 50 == 7) text += std::string(3000, '0') + "\n";                   // one field: bad
    else if (i % 50 == 9) text += "\n\n\n";                                  // empty lines: bad
    else if (i % 50 == 11) text += with_field(gen.row(), 2, std::string(900, '0') + "3") + "\r\n";
    else text += gen.row() + "\n";
  }
  text += gen.row();  // no final newline
  std::vector<RawRow> want;
  uint64_t lines = 0, bad = 0;
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    RawRow r;
    int field = -1;
    if (parse_row_reference(text.data() + b, text.data() + e, &r, &field) == RowError::kOk) want.push_back(r);
    else ++bad;
    ++lines;
    b = e + 1;
  }
  ASSERT_GT(bad, 10u);
  const size_t pad = 64;
  cuda_detail::BlockPipeline pipe(text.size() + pad, false, 0);
  char* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, text.size() + 2 * pad), cudaSuccess);
  for (size_t off = 0; off < 34; ++off) {
    ASSERT_EQ(cudaMemset(d, '\n', text.size() + 2 * pad), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d + off, text.data(), text.size(), cudaMemcpyHostToDevice), cudaSuccess);
    pipe.enqueue(d + off, text.size(), InputFormat::kTsv, cudaStream_t(0));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    cuda_detail::BlockCounts c;
    ASSERT_EQ(cudaMemcpy(&c, pipe.device_counts(), sizeof c, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(c.lines, lines) << "offset " << off;
    ASSERT_EQ(c.good, want.size()) << "offset " << off;
    ASSERT_EQ(c.bad, bad) << "offset " << off;
    std::vector<int32_t> labels(c.good);
    std::vector<float> dense(size_t(c.good) * kNumDense);
    std::vector<uint32_t> sparse(size_t(c.good) * kNumSparse);
    ASSERT_EQ(cudaMemcpy(labels.data(), pipe.out().labels, labels.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dense.data(), pipe.out().dense, dense.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(sparse.data(), pipe.out().sparse, sparse.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t r = 0; r < want.size(); ++r) {
      ASSERT_EQ(labels[r], want[r].label) << "offset " << off << " row " << r;
      for (int i = 0; i < kNumDense; ++i) {
        const float v = dense_value(want[r].ints[i]);
        ASSERT_EQ(std::memcmp(&dense[r * kNumDense + i], &v, 4), 0) << "offset " << off << " row " << r;
      }
      for (int j = 0; j < kNumSparse; ++j)
        ASSERT_EQ(sparse[r * kNumSparse + j], want[r].cats[j]) << "offset " << off << " row " << r;
    }
  }
  cudaFree(d);
}
#endif

TEST(CudaEngine, MissingGpuIsAClearError) {
  if (have_gpu()) GTEST_SKIP() << "a GPU is present";
  try {
    make_engine("cuda", EngineOptions());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--engine cuda"), std::string::npos) << e.what();
  }
  EXPECT_STREQ(make_engine("auto", EngineOptions())->name(), "cpu");
}

TEST(CudaEngine, CriteoSampleEveryOutputKind) {
  REQUIRE_GPU();
  for (DenseOut dense : {DenseOut::kLog, DenseOut::kClampedInt}) {
    for (uint64_t modulo : {uint64_t(0), uint64_t(977)}) {
      for (IdMode ids : {IdMode::kRaw, IdMode::kFirstSeen}) {
        for (size_t block : {size_t(1024), size_t(4) << 20}) {
          EngineOptions o = base(block, modulo);
          o.dense = dense;
          o.ids = ids;
          const std::string what = "dense " + std::to_string(int(dense)) + " modulo " + std::to_string(modulo) +
                                   " ids " + std::to_string(int(ids)) + " block " + std::to_string(block);
          expect_same(run("cpu", o, {sample_path()}), run("cuda", o, {sample_path()}), what);
        }
      }
    }
  }
}

TEST(CudaEngine, RandomRowsWithEveryMalformedKind) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  std::mt19937 rng(3);
  for (int seed = 0; seed < 4; ++seed) {
    std::map<int, const BadKind*> bad;
    int line = 3;
    for (const BadKind& k : kBadKinds) {
      bad[line] = &k;
      line += 1 + int(rng() % 40);
    }
    std::string text, without;
    make_texts(900 + uint64_t(seed), line + 50, bad, seed % 2 == 0, &text, &without);
    const std::string path = dir / ("bad" + std::to_string(seed) + ".tsv");
    write_file(path, text);
    for (OnError mode : {OnError::kSkip, OnError::kFail}) {
      for (size_t block : {size_t(1024), size_t(5000), size_t(1) << 20}) {
        EngineOptions o = base(block, seed % 2 ? 1000 : 0);
        o.on_error = mode;
        o.ids = seed >= 2 ? IdMode::kFirstSeen : IdMode::kRaw;
        const std::string what = "seed " + std::to_string(seed) + " mode " + std::to_string(int(mode)) + " block " +
                                 std::to_string(block);
        const EngineRun cpu = run("cpu", o, {path}), gpu = run("cuda", o, {path});
        expect_same(cpu, gpu, what);
        if (mode == OnError::kFail) EXPECT_FALSE(gpu.error.empty()) << what;
        else EXPECT_EQ(gpu.stats.rows_skipped, bad.size()) << what;
      }
    }
  }
}

// The line and value passes copy each warp's 32 lines into shared memory when their span fits (12 KiB)
// and read global memory otherwise: long good rows (zero-padded integers), long junk lines, runs of
// empty lines between rows and CRLF ends make warps of both kinds, side by side in one block.
TEST(CudaEngine, LongLinesAndRunsOfEmptyLines) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(17);
  std::mt19937 rng(17);
  std::string text;
  int good = 0;
  for (int i = 0; i < 4000; ++i) {
    const uint32_t k = rng() % 100;
    if (k < 3) {
      text += with_field(gen.row(), 1 + int(rng() % 13), std::string(200 + rng() % 3000, '0') + "7") + "\n";
      ++good;
    } else if (k < 5) {
      text += std::string(5000 + rng() % 20000, 'x') + "\n";  // one field: a bad line
    } else if (k < 7) {
      text += std::string(1 + rng() % 400, '\n');  // empty lines: bad
    } else {
      text += gen.row() + (k % 2 ? "\r\n" : "\n");
      ++good;
    }
  }
  ASSERT_GT(good, 3500);
  const std::string path = dir / "long.tsv";
  write_file(path, text);
  for (size_t block : {size_t(64) << 10, size_t(1) << 20, size_t(8) << 20}) {
    EngineOptions o = base(block, 1000);
    o.on_error = OnError::kSkip;
    o.ids = IdMode::kFirstSeen;
    const EngineRun cpu = run("cpu", o, {path});
    for (int read_threads : {0, 3}) {  // the mapping registered with the GPU, or blocks read by 3 threads
      o.read_threads = read_threads;
      const EngineRun gpu = run("cuda", o, {path});
      expect_same(cpu, gpu, "block " + std::to_string(block) + ", read threads " + std::to_string(read_threads));
      EXPECT_EQ(gpu.stats.rows, uint64_t(good));
    }
  }
}

TEST(CudaEngine, RowsStraddlingBlocksOfEverySize) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(5);
  std::string text;
  while (text.size() < (size_t(24) << 20)) text += gen.text(5000, true);
  text += gen.text(7, false);  // a last line without '\n'
  const std::string path = dir / "big.tsv";
  write_file(path, text);
  EngineOptions c = base(size_t(4) << 20);
  const EngineRun cpu = run("cpu", c, {path});
  for (size_t block : {size_t(1) << 10, size_t(1) << 12, size_t(1) << 16, size_t(1) << 20, size_t(16) << 20,
                       size_t(256) << 20}) {
    if (block == (size_t(1) << 10)) {
      // 1 KiB blocks over 24 MB are slow to check in full: a 256 KB prefix of the file.
      const std::string small = dir / "small.tsv";
      write_file(small, text.substr(0, text.find('\n', size_t(256) << 10) + 1));
      expect_same(run("cpu", base(4096), {small}), run("cuda", base(block), {small}), "block 1 KiB");
      continue;
    }
    expect_same(cpu, run("cuda", base(block), {path}), "block " + std::to_string(block));
    EngineOptions threaded = base(block);
    threaded.read_threads = 4;
    expect_same(cpu, run("cuda", threaded, {path}), "block " + std::to_string(block) + ", 4 read threads");
  }
}

TEST(CudaEngine, FirstSeenAndMinFreqVocabulariesAcrossBlocks) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(8);
  // Few distinct values (modulo) and many blocks: values recur across blocks; two files.
  write_file(dir / "a.tsv", gen.text(20000, true));
  write_file(dir / "b.tsv", gen.text(15000, false));
  for (uint32_t min_freq : {1u, 2u, 5u}) {
    for (uint64_t modulo : {uint64_t(50), uint64_t(100000), uint64_t(0)}) {
      for (size_t block : {size_t(4096), size_t(300000)}) {
        EngineOptions o = base(block, modulo);
        o.ids = IdMode::kFirstSeen;
        o.min_freq = min_freq;
        const std::string what =
            "min_freq " + std::to_string(min_freq) + " modulo " + std::to_string(modulo) + " block " + std::to_string(block);
        expect_same(run("cpu", o, {dir / "a.tsv", dir / "b.tsv"}), run("cuda", o, {dir / "a.tsv", dir / "b.tsv"}), what);
      }
    }
  }
  // A capacity: later new values share the last id.
  EngineOptions o = base(8192);
  o.ids = IdMode::kFirstSeen;
  o.id_capacity = 100;
  EngineRun cpu = run("cpu", o, {dir / "a.tsv"}), gpu = run("cuda", o, {dir / "a.tsv"});
  std::string why;
  EXPECT_TRUE(bitwise_equal(cpu.cols, gpu.cols, &why)) << "capacity: " << why;
}

TEST(CudaEngine, GivenVocabularyAndRowLimit) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(12);
  write_file(dir / "a.tsv", gen.text(6000, true));
  EngineOptions fo = base(1 << 16, 300);
  fo.ids = IdMode::kFirstSeen;
  fo.min_freq = 3;
  Vocabulary v = run("cpu", fo, {dir / "a.tsv"}).vocab;
  v.build_index();
  write_file(dir / "b.tsv", gen.text(4000, true));
  for (auto unseen : {Vocabulary::Unseen::kZero, Vocabulary::Unseen::kExtraId}) {
    EngineOptions o = base(1 << 14, 300);
    o.ids = IdMode::kVocab;
    o.vocab = &v;
    o.unseen = unseen;
    expect_same(run("cpu", o, {dir / "b.tsv"}), run("cuda", o, {dir / "b.tsv"}), "given vocabulary");
  }
  // A row limit ends the run inside a block: later rows get no ids.
  for (uint64_t limit : {uint64_t(0), uint64_t(1), uint64_t(1234), uint64_t(5999), uint64_t(6000), uint64_t(7000)}) {
    EngineOptions o = base(1 << 14, 0);
    o.ids = IdMode::kFirstSeen;
    Collected got[2];
    Vocabulary vocab[2];
    int k = 0;
    for (const char* name : {"cpu", "cuda"}) {
      auto e = make_engine(name, o);
      BlockReader blocks({dir / "a.tsv"}, o.block_bytes);
      e->run(blocks, [&](const ChunkView& c) {
        got[k].add(c);
        return true;
      }, limit);
      vocab[k] = e->take_vocabulary();
      ++k;
    }
    std::string why;
    EXPECT_TRUE(bitwise_equal(got[0], got[1], &why)) << "limit " << limit << ": " << why;
    EXPECT_EQ(got[0].rows, int64_t(std::min<uint64_t>(limit, 6000)));
    for (int c = 0; c < kNumSparse; ++c) EXPECT_EQ(vocab[0].values[c], vocab[1].values[c]) << "limit " << limit;
  }
}

TEST(CudaEngine, PrepOutputsAreByteIdentical) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(21);
  const std::string a = dir / "day_a.tsv", b = dir / "day_b.tsv", crlf = dir / "crlf.tsv", gz = dir / "day_c.tsv.gz";
  write_file(a, gen.text(3000, true));
  write_file(b, gen.text(2500, false));
  std::string crlf_text;
  for (int i = 0; i < 500; ++i) crlf_text += gen.row() + "\r\n";
  write_file(crlf, crlf_text);
  write_gz(gz, gen.text(1500, true));
  // Meta's binary rows, written by a cpu prep.
  const std::string bin_dir = dir / "bin";
  {
    PrepOptions o;
    o.inputs = {a};
    o.out = bin_dir;
    o.format = OutputFormat::kDlrmBin;
    o.max_ind_range = 1 << 20;
    o.vocab = VocabMode::kNone;
    o.engine = "cpu";
    prep(o);
  }
  const std::string bin = bin_dir + "/day_a.bin";
  struct Case {
    std::vector<std::string> inputs;
    VocabMode vocab;
    uint32_t min_freq;
    uint64_t modulo;
    int days;
    OutputFormat format;
    OnError on_error;
  };
  const Case cases[] = {
      {{a, b}, VocabMode::kFirstSeen, 1, 0, 0, OutputFormat::kNpy, OnError::kFail},
      {{a, b}, VocabMode::kFirstSeen, 2, 0, 3, OutputFormat::kNpy, OnError::kFail},
      {{a, b, gz}, VocabMode::kNone, 1, 1000, 0, OutputFormat::kNpy, OnError::kFail},
      {{a, crlf}, VocabMode::kNone, 1, 0, 0, OutputFormat::kNpy, OnError::kSkip},
      {{a, b}, VocabMode::kFirstSeen, 1, 5000, 2, OutputFormat::kDlrmBin, OnError::kFail},
      {{gz, crlf}, VocabMode::kFirstSeen, 3, 0, 0, OutputFormat::kDlrmBin, OnError::kSkip},
      {{bin}, VocabMode::kFirstSeen, 1, 0, 0, OutputFormat::kNpy, OnError::kFail},
      {{bin}, VocabMode::kNone, 1, 777, 2, OutputFormat::kDlrmBin, OnError::kFail},
  };
  int k = 0;
  for (const Case& c : cases) {
    std::vector<std::vector<std::pair<std::string, std::string>>> trees;
    for (const char* engine : {"cpu", "cuda"}) {
      PrepOptions o;
      o.inputs = c.inputs;
      o.out = dir / ("out" + std::to_string(k) + "_" + engine);
      o.vocab = c.vocab;
      o.min_freq = c.min_freq;
      o.max_ind_range = c.modulo;
      o.days = c.days;
      o.format = c.format;
      o.on_error = c.on_error;
      o.engine = engine;
      o.chunk_bytes = 64 << 10;
      prep(o);
      trees.push_back(read_tree(o.out));
    }
    ASSERT_EQ(trees[0].size(), trees[1].size()) << "case " << k;
    for (size_t i = 0; i < trees[0].size(); ++i) {
      EXPECT_EQ(trees[0][i].first, trees[1][i].first) << "case " << k;
      EXPECT_TRUE(trees[0][i].second == trees[1][i].second) << "case " << k << ": " << trees[0][i].first << " differs";
    }
    ++k;
  }
}

TEST(CudaEngine, FailModeStopsWithTheSameMessageAndNoOutput) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  std::string text, without;
  make_texts(31, 400, {{257, &kBadKinds[5]}}, true, &text, &without);
  write_file(dir / "bad.tsv", text);
  std::string msg[2];
  int k = 0;
  for (const char* engine : {"cpu", "cuda"}) {
    PrepOptions o;
    o.inputs = {dir / "bad.tsv"};
    o.out = dir / (std::string("out_") + engine);
    o.engine = engine;
    try {
      prep(o);
    } catch (const Error& e) {
      msg[k] = e.what();
    }
    EXPECT_FALSE(fs::exists(o.out)) << engine;
    ++k;
  }
  EXPECT_EQ(msg[0], msg[1]);
  EXPECT_NE(msg[1].find("bad.tsv:257: "), std::string::npos) << msg[1];
}

#if defined(SLUICE_HAVE_CUDA)
TEST(CudaEngine, DeviceChunksHoldTheSameRows) {
  REQUIRE_GPU();
  TempDir dir("cuda");
  RowGen gen(44);
  write_file(dir / "a.tsv", gen.text(8000, true));
  EngineOptions o = base(1 << 16, 0);
  o.ids = IdMode::kFirstSeen;
  const EngineRun host = run("cuda", o, {dir / "a.tsv"});
  // The same run handing out device memory: each chunk is copied back by the test.
  o.output = MemoryKind::kDevice;
  auto e = make_engine("cuda", o);
  int64_t rows = 0;
  std::vector<float> dense;
  std::vector<uint32_t> sparse;
  size_t chunks = 0;
  run_files(*e, {dir / "a.tsv"}, [&](const ChunkView& c) {
    EXPECT_EQ(c.memory, MemoryKind::kDevice);
    EXPECT_NE(c.stream, nullptr);
    std::vector<float> d(size_t(c.rows) * kNumDense);
    std::vector<uint32_t> s(size_t(c.rows) * kNumSparse);
    cuda_batch::copy_to_host(d.data(), c.dense, d.size() * 4, c.stream);
    cuda_batch::copy_to_host(s.data(), c.sparse, s.size() * 4, c.stream);
    dense.insert(dense.end(), d.begin(), d.end());
    sparse.insert(sparse.end(), s.begin(), s.end());
    rows += c.rows;
    ++chunks;
    return true;
  });
  EXPECT_GT(chunks, 3u);
  EXPECT_EQ(rows, host.cols.rows);
  EXPECT_TRUE(same_bits(dense, host.cols.dense));
  EXPECT_EQ(sparse, host.cols.sparse);
}
#endif

}  // namespace
