// Training's input path on the fpga engine: batches streamed from raw days (what `sluice train
// --engine fpga` reads) equal the cpu engine's, for modulo ids and for online first-seen ids.
#include <gtest/gtest.h>

#include <cstring>

#include "core/test_util.hpp"
#include "sluice/batch.hpp"
#include "sluice/dataset.hpp"
#include "sluice/gen.hpp"

using namespace sluice;
using sluice_test::TempDir;

namespace {

struct Drained {
  std::vector<uint32_t> dense_bits;
  std::vector<int32_t> sparse;
  std::vector<float> labels;
  std::vector<int64_t> batch_rows;
};

Drained drain(BatchStream& s) {
  Drained r;
  for (;;) {
    Lease l = s.next();
    if (!l) break;
    const BatchView& v = l.view();
    r.batch_rows.push_back(v.rows);
    const size_t d = r.dense_bits.size();
    r.dense_bits.resize(d + size_t(v.rows) * kNumDense);
    std::memcpy(r.dense_bits.data() + d, v.dense, size_t(v.rows) * kNumDense * 4);
    r.sparse.insert(r.sparse.end(), v.sparse, v.sparse + v.rows * kNumSparse);
    r.labels.insert(r.labels.end(), v.labels, v.labels + v.rows);
  }
  return r;
}

}  // namespace

TEST(FpgaDataset, RawDaysStreamLikeCpu) {
  TempDir dir("fpga_dataset");
  GenOptions g;
  g.rows = 601;
  g.days = 3;
  g.seed = 9;
  g.cardinality_scale = 0.001;
  g.out = (dir.path() / "raw").string();
  g.threads = 2;
  generate(g);
  const DatasetInfo info = inspect_dataset(g.out);
  for (OnlineIds ids : {OnlineIds::kModulo, OnlineIds::kFirstSeen}) {
    for (Split split : {Split::kTrain, Split::kTest}) {
      StreamOptions so;
      so.ids = ids;
      so.max_ind_range = 1000;
      so.first_seen_capacity = 50;  // small: later values share the last id
      so.batch_size = 64;
      so.ring_depth = 2;
      so.threads = 2;
      so.split = split;
      so.engine = "cpu";
      const Drained want = drain(*open_batch_stream(info, so));
      so.engine = "fpga";
      const Drained got = drain(*open_batch_stream(info, so));
      SCOPED_TRACE(std::string(ids == OnlineIds::kModulo ? "modulo" : "first-seen") +
                   (split == Split::kTrain ? ", train" : ", test"));
      ASSERT_GT(want.labels.size(), 0u);
      EXPECT_EQ(got.batch_rows, want.batch_rows);
      EXPECT_EQ(got.labels, want.labels);
      EXPECT_EQ(got.dense_bits, want.dense_bits);
      EXPECT_EQ(got.sparse, want.sparse);
    }
  }
}
