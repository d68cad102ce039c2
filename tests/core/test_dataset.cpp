// Training datasets: raw day folders and prepared outputs served as batch streams.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "core/test_util.hpp"
#include "sluice/dataset.hpp"
#include "sluice/engine.hpp"
#include "sluice/gen.hpp"
#include "sluice/prep.hpp"

using namespace sluice;
using sluice_test::TempDir;
namespace fs = std::filesystem;

namespace {

struct Rows {
  std::vector<float> dense, labels;
  std::vector<int32_t> sparse;
  std::vector<int64_t> batch_rows;
  std::vector<uint64_t> first_rows;
  size_t size() const { return labels.size(); }
};

Rows drain(BatchStream& s) {
  Rows r;
  for (;;) {
    Lease l = s.next();
    if (!l) break;
    const BatchView& v = l.view();
    r.batch_rows.push_back(v.rows);
    r.first_rows.push_back(v.first_row);
    r.dense.insert(r.dense.end(), v.dense, v.dense + v.rows * kNumDense);
    r.sparse.insert(r.sparse.end(), v.sparse, v.sparse + v.rows * kNumSparse);
    r.labels.insert(r.labels.end(), v.labels, v.labels + v.rows);
  }
  return r;
}

// The engine's rows of one file, [begin, end).
Rows engine_rows(const std::string& file, uint64_t modulo, int64_t begin, int64_t end) {
  EngineOptions eo;
  eo.max_ind_range = modulo;
  eo.threads = 2;
  eo.block_bytes = 4096;
  CpuEngine e(eo);
  Rows all;
  run_files(e, {file}, [&](const ChunkView& c) {
    all.dense.insert(all.dense.end(), c.dense, c.dense + c.rows * kNumDense);
    all.sparse.insert(all.sparse.end(), c.sparse, c.sparse + c.rows * kNumSparse);
    for (int64_t i = 0; i < c.rows; ++i) all.labels.push_back(float(c.labels[i]));
    return true;
  });
  Rows r;
  r.dense.assign(all.dense.begin() + begin * kNumDense, all.dense.begin() + end * kNumDense);
  r.sparse.assign(all.sparse.begin() + begin * kNumSparse, all.sparse.begin() + end * kNumSparse);
  r.labels.assign(all.labels.begin() + begin, all.labels.begin() + end);
  return r;
}

void append(Rows* a, const Rows& b) {
  a->dense.insert(a->dense.end(), b.dense.begin(), b.dense.end());
  a->sparse.insert(a->sparse.end(), b.sparse.begin(), b.sparse.end());
  a->labels.insert(a->labels.end(), b.labels.begin(), b.labels.end());
}

class Dataset : public ::testing::Test {
 protected:
  void SetUp() override {
    GenOptions g;
    g.rows = 3001;  // days of 1001, 1000, 1000 rows
    g.days = 3;
    g.seed = 5;
    g.cardinality_scale = 0.001;
    g.out = (dir_.path() / "raw").string();
    g.threads = 2;
    generate(g);
    raw_ = g.out;
  }
  std::string day(int d) const { return raw_ + "/day_" + std::to_string(d) + ".tsv"; }
  TempDir dir_{"dataset"};
  std::string raw_;
};

}  // namespace

TEST_F(Dataset, RawFolderDaysAndSplits) {
  // Names that are not day files are ignored.
  std::ofstream(raw_ + "/notes.md") << "x";
  std::ofstream(raw_ + "/day_x.tsv") << "x";
  std::ofstream(raw_ + "/day_1.txt") << "x";
  const DatasetInfo info = inspect_dataset(raw_);
  EXPECT_EQ(info.kind, DatasetKind::kRawDays);
  ASSERT_EQ(info.parts, (std::vector<std::string>{"day_0", "day_1", "day_2"}));
  EXPECT_EQ(info.part_rows, (std::vector<int64_t>{1001, 1000, 1000}));
  EXPECT_EQ(split_rows(info, Split::kTrain), 2001);
  EXPECT_EQ(split_rows(info, Split::kTest), 500);
}

TEST_F(Dataset, RawStreamEqualsEngineRowsInOrder) {
  const DatasetInfo info = inspect_dataset(raw_);
  StreamOptions so;
  so.ids = OnlineIds::kModulo;
  so.max_ind_range = 1000;
  so.batch_size = 64;
  so.ring_depth = 2;
  so.threads = 2;
  so.split = Split::kTrain;
  const Rows train = drain(*open_batch_stream(info, so));
  Rows want = engine_rows(day(0), 1000, 0, 1001);
  append(&want, engine_rows(day(1), 1000, 0, 1000));
  ASSERT_EQ(train.size(), 2001u);
  EXPECT_EQ(train.dense, want.dense);
  EXPECT_EQ(train.sparse, want.sparse);
  EXPECT_EQ(train.labels, want.labels);
  // Full batches, then the rest; positions count rows.
  EXPECT_EQ(train.batch_rows.size(), 32u);
  EXPECT_EQ(train.batch_rows.back(), 2001 - 31 * 64);
  for (size_t i = 0; i < train.first_rows.size(); ++i) EXPECT_EQ(train.first_rows[i], i * 64);

  so.split = Split::kTest;
  const Rows test = drain(*open_batch_stream(info, so));
  const Rows want_test = engine_rows(day(2), 1000, 0, 500);
  EXPECT_EQ(test.sparse, want_test.sparse);
  EXPECT_EQ(test.dense, want_test.dense);

  // Resume: skipping rows gives the tail of the same stream.
  so.split = Split::kTrain;
  so.start_row = 1500;
  const Rows tail = drain(*open_batch_stream(info, so));
  ASSERT_EQ(tail.size(), 501u);
  EXPECT_TRUE(std::equal(tail.sparse.begin(), tail.sparse.end(), want.sparse.begin() + 1500 * kNumSparse));
}

TEST_F(Dataset, OnlineFirstSeenIdsEqualPreparedTwoPassIds) {
  PrepOptions po;
  po.inputs = {day(0), day(1), day(2)};
  po.out = (dir_.path() / "prep").string();
  po.threads = 2;
  prep(po);
  PrepOptions pb = po;
  pb.out = (dir_.path() / "prep-bin").string();
  pb.format = OutputFormat::kDlrmBin;
  prep(pb);

  const DatasetInfo raw = inspect_dataset(raw_);
  const DatasetInfo npy = inspect_dataset(po.out);
  const DatasetInfo bin = inspect_dataset(pb.out);
  EXPECT_EQ(npy.kind, DatasetKind::kPreparedNpy);
  EXPECT_EQ(bin.kind, DatasetKind::kPreparedBin);
  EXPECT_EQ(npy.part_rows, raw.part_rows);

  StreamOptions so;
  so.batch_size = 100;
  so.threads = 2;
  so.ids = OnlineIds::kFirstSeen;
  so.first_seen_capacity = 1 << 20;
  auto state = make_online_state(raw, so);
  for (Split split : {Split::kTrain, Split::kTest}) {
    so.split = split;
    const Rows a = drain(*open_batch_stream(raw, so, state));
    const Rows b = drain(*open_batch_stream(npy, so));
    const Rows c = drain(*open_batch_stream(bin, so));
    EXPECT_EQ(a.sparse, b.sparse) << "split " << int(split);
    EXPECT_EQ(a.dense, b.dense);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(b.sparse, c.sparse);
    EXPECT_EQ(b.dense, c.dense);  // ln(x+1) of the clamped ints stored in the binary rows
    EXPECT_EQ(b.labels, c.labels);
  }
  // Vocabulary ids loaded from the prep output: the same ids again.
  StreamOptions sv = so;
  sv.ids = OnlineIds::kVocabFromPrep;
  sv.vocab_dir = po.out;
  sv.split = Split::kTrain;
  const auto sizes = table_sizes_for(raw, sv);
  for (int c = 0; c < kNumSparse; ++c) EXPECT_EQ(sizes[size_t(c)], npy.table_sizes[size_t(c)] + 1);
  so.split = Split::kTrain;
  EXPECT_EQ(drain(*open_batch_stream(raw, sv)).sparse, drain(*open_batch_stream(npy, so)).sparse);
}

TEST_F(Dataset, RingHandsOutAtMostDepthBatchesAndReportsWaiting) {
  const DatasetInfo info = inspect_dataset(raw_);
  StreamOptions so;
  so.ids = OnlineIds::kModulo;
  so.max_ind_range = 97;
  so.batch_size = 10;
  so.ring_depth = 3;
  auto s = open_batch_stream(info, so);
  std::vector<Lease> held;
  for (int i = 0; i < 3; ++i) held.push_back(s->next());
  for (const auto& l : held) EXPECT_EQ(l.view().rows, 10);
  // Every slot is leased: the producer cannot go on until one comes back.
  std::thread giver([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    held.front().release();
  });
  Lease next = s->next();
  giver.join();
  EXPECT_EQ(next.view().first_row, 30u);
  EXPECT_GE(s->wait_seconds(), 0.05);
  for (int i = 0; i < 10 * kNumSparse; ++i) EXPECT_LT(next.view().sparse[i], 97);
}

TEST_F(Dataset, ClearErrors) {
  EXPECT_THROW(inspect_dataset((dir_.path() / "missing").string()), Error);
  fs::create_directories(dir_.path() / "empty");
  try {
    inspect_dataset((dir_.path() / "empty").string());
    FAIL() << "no error for an empty directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty data directory"), std::string::npos) << e.what();
  }
  fs::create_directories(dir_.path() / "one");
  fs::copy_file(day(0), dir_.path() / "one" / "day_0.tsv");
  const DatasetInfo one = inspect_dataset((dir_.path() / "one").string());
  EXPECT_THROW(split_rows(one, Split::kTrain), Error);  // every day but the last trains: need two
  StreamOptions so;
  so.ids = OnlineIds::kModulo;  // no bound
  EXPECT_THROW(table_sizes_for(inspect_dataset(raw_), so), Error);
}

TEST_F(Dataset, FilesGivenOneByOneAllAndValSplits) {
  // The files' order decides the days: day_0 (1001 rows) last, so it holds the test and val rows.
  const DatasetInfo info = inspect_files({day(1), day(2), day(0)});
  EXPECT_EQ(info.kind, DatasetKind::kRawDays);
  EXPECT_EQ(info.part_rows, (std::vector<int64_t>{1000, 1000, 1001}));
  EXPECT_EQ(split_rows(info, Split::kAll), 3001);
  EXPECT_EQ(split_rows(info, Split::kTrain), 2000);
  EXPECT_EQ(split_rows(info, Split::kTest), 501);
  EXPECT_EQ(split_rows(info, Split::kVal), 500);

  StreamOptions so;
  so.ids = OnlineIds::kModulo;
  so.max_ind_range = 1000;
  so.batch_size = 64;
  so.threads = 2;
  so.split = Split::kVal;
  const Rows val = drain(*open_batch_stream(info, so));
  const Rows want_val = engine_rows(day(0), 1000, 501, 1001);
  ASSERT_EQ(val.size(), 500u);
  EXPECT_EQ(val.dense, want_val.dense);
  EXPECT_EQ(val.sparse, want_val.sparse);
  EXPECT_EQ(val.labels, want_val.labels);

  so.split = Split::kAll;
  so.start_row = 1990;  // resume inside the second file
  const Rows all = drain(*open_batch_stream(info, so));
  Rows want = engine_rows(day(2), 1000, 990, 1000);
  append(&want, engine_rows(day(0), 1000, 0, 1001));
  ASSERT_EQ(all.size(), 1011u);
  EXPECT_EQ(all.sparse, want.sparse);
  EXPECT_EQ(all.dense, want.dense);
  EXPECT_EQ(all.first_rows.front(), 0u);

  // One file: every row, but no train/test split.
  const DatasetInfo one = inspect_files({day(2)});
  EXPECT_EQ(split_rows(one, Split::kAll), 1000);
  EXPECT_THROW(split_rows(one, Split::kTest), Error);
  EXPECT_THROW(inspect_files({}), Error);
  try {
    inspect_files({day(0), raw_ + "/day_9.tsv"});
    FAIL() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("day_9.tsv: no such file"), std::string::npos) << e.what();
  }
}

TEST_F(Dataset, FirstSeenIdsFromStartEqualPreparedIdsOfTheSplit) {
  PrepOptions po;
  po.inputs = {day(0), day(1), day(2)};
  po.out = (dir_.path() / "prep").string();
  po.threads = 2;
  prep(po);
  const DatasetInfo raw = inspect_dataset(raw_);
  const DatasetInfo npy = inspect_dataset(po.out);
  StreamOptions so;
  so.batch_size = 128;
  so.threads = 2;
  so.ids = OnlineIds::kFirstSeen;
  so.first_seen_capacity = 1 << 20;
  so.ids_from_start = true;
  for (Split split : {Split::kVal, Split::kTest, Split::kAll}) {
    so.split = split;
    const Rows a = drain(*open_batch_stream(raw, so));  // no state shared with a train stream
    const Rows b = drain(*open_batch_stream(npy, so));
    ASSERT_GT(a.size(), 0u);
    EXPECT_EQ(a.sparse, b.sparse) << "split " << int(split);
    EXPECT_EQ(a.dense, b.dense);
    EXPECT_EQ(a.labels, b.labels);
  }
  // Without it the val rows get ids from the last day alone: different ones.
  so.ids_from_start = false;
  so.split = Split::kVal;
  EXPECT_NE(drain(*open_batch_stream(raw, so)).sparse, drain(*open_batch_stream(npy, so)).sparse);
}

TEST_F(Dataset, GrowingRingKeepsHeldBatchesIntact) {
  const DatasetInfo info = inspect_dataset(raw_);
  StreamOptions so;
  so.ids = OnlineIds::kModulo;
  so.max_ind_range = 1000;
  so.batch_size = 50;
  so.ring_depth = 2;
  so.threads = 2;
  so.split = Split::kAll;
  const Rows want = drain(*open_batch_stream(info, so));
  so.grow = true;
  auto s = open_batch_stream(info, so);
  // Hold every batch: with two slots and no growing, the third next() would wait forever.
  std::vector<Lease> held;
  for (;;) {
    Lease l = s->next();
    if (!l) break;
    held.push_back(std::move(l));
  }
  ASSERT_EQ(held.size(), size_t((3001 + 49) / 50));
  std::vector<const int32_t*> buffers;
  Rows got;
  for (const auto& l : held) {
    const BatchView& v = l.view();
    buffers.push_back(v.sparse);
    got.dense.insert(got.dense.end(), v.dense, v.dense + v.rows * kNumDense);
    got.sparse.insert(got.sparse.end(), v.sparse, v.sparse + v.rows * kNumSparse);
    got.labels.insert(got.labels.end(), v.labels, v.labels + v.rows);
  }
  std::sort(buffers.begin(), buffers.end());
  EXPECT_EQ(std::unique(buffers.begin(), buffers.end()), buffers.end()) << "two held batches share a buffer";
  EXPECT_EQ(got.sparse, want.sparse);
  EXPECT_EQ(got.dense, want.dense);
  EXPECT_EQ(got.labels, want.labels);
}

TEST_F(Dataset, NextForGivesUpAfterItsTimeAndGoesOnLater) {
  const DatasetInfo info = inspect_dataset(raw_);
  StreamOptions so;
  so.ids = OnlineIds::kModulo;
  so.max_ind_range = 97;
  so.batch_size = 10;
  so.ring_depth = 2;
  auto s = open_batch_stream(info, so);
  Lease a = s->next(), b = s->next();
  // Both slots held, no growing: nothing can come.
  Lease c;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s->next_for(0.05, &c));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(45));
  EXPECT_FALSE(c);
  a.release();
  ASSERT_TRUE(s->next_for(10.0, &c));
  EXPECT_EQ(c.view().first_row, 20u);
}
