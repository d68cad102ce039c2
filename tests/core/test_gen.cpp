// Tests of sluice gen: determinism, day split, syntax, statistics, truth.json, atomic output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "core/test_util.hpp"
#include "gen/auc.hpp"
#include "gen/fastmath.hpp"
#include "gen/model.hpp"
#include "sluice/gen.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"

namespace fs = std::filesystem;

namespace {

class GenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("sluice_gen_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string path(const std::string& name) const { return (root_ / name).string(); }

  sluice::GenResult gen(const std::string& name, uint64_t rows, int days, uint64_t seed,
                        double scale, int threads) {
    sluice::GenOptions o;
    o.rows = rows;
    o.days = days;
    o.seed = seed;
    o.cardinality_scale = scale;
    o.out = path(name);
    o.threads = threads;
    o.sync = false;
    return sluice::generate(o);
  }

  // Entries of the root directory other than the given ones (leftover temporary directories).
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (auto& e : fs::directory_iterator(root_)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }

  fs::path root_;
};

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> v;
  size_t pos = 0;
  for (;;) {
    size_t e = line.find('\t', pos);
    if (e == std::string::npos) {
      v.push_back(line.substr(pos));
      return v;
    }
    v.push_back(line.substr(pos, e - pos));
    pos = e + 1;
  }
}

bool is_int(const std::string& s) {  // -?[0-9]+
  size_t i = s.size() > 0 && s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

bool is_hex8(const std::string& s) {
  if (s.size() != 8) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

TEST(GenMath, FastLog2Exp2MatchLibm) {
  using namespace sluice::gen_detail;
  Rng rng(42);
  for (int i = 0; i < 20000; ++i) {
    double u = unit_open(uint32_t(rng.next()));
    double y = (u - 0.5) * 120;
    EXPECT_NEAR(exp2_fast(y) / std::exp2(y), 1.0, 1e-12);
    double x = std::exp2(y);
    EXPECT_NEAR(log2_fast(x), std::log2(x), 1e-12);
  }
}

TEST(GenMath, AucCountsTiesAsHalf) {
  using sluice::gen_detail::auc_of_signed;
  // positives 0.5, 0.7; negatives 0.5, 0.2: pairs 0.5 + 1 + 1 + 1 = 3.5 of 4
  std::vector<double> v = {0.5, -0.5, 0.7, -0.2};
  EXPECT_DOUBLE_EQ(auc_of_signed(v), 0.875);
  std::vector<double> one_class = {0.1, 0.2};
  EXPECT_TRUE(std::isnan(auc_of_signed(one_class)));
}

TEST(GenMath, ItemHashIsInjectivePerColumn) {
  sluice::gen_detail::Model m(1, 1.0);
  for (int c : {0, 2, 25}) {
    std::vector<uint32_t> h;
    for (uint32_t k = 0; k < 200000; ++k) h.push_back(m.item_hash(c, k));
    std::sort(h.begin(), h.end());
    EXPECT_EQ(std::adjacent_find(h.begin(), h.end()), h.end()) << "column " << c;
  }
}

TEST_F(GenTest, SplitsRowsOverDaysLikeMeta) {
  auto r = gen("out", 10, 3, 1, 1.0, 2);
  EXPECT_EQ(r.rows, 10u);
  std::vector<size_t> expect = {4, 3, 3};
  uint64_t bytes = 0;
  for (int d = 0; d < 3; ++d) {
    std::string text = sluice_test::read_file(path("out/day_" + std::to_string(d) + ".tsv"));
    bytes += text.size();
    EXPECT_EQ(sluice_test::split_lines(text).size(), expect[size_t(d)]) << "day " << d;
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
  }
  EXPECT_EQ(r.bytes, bytes);
  auto truth = nlohmann::json::parse(sluice_test::read_file(path("out/truth.json")));
  EXPECT_EQ(truth["rows_per_day"], nlohmann::json::array({4, 3, 3}));
  EXPECT_EQ(truth["test_rows"], 2);
}

TEST_F(GenTest, MoreDaysThanRowsGivesEmptyDays) {
  gen("out", 2, 4, 1, 1.0, 1);
  EXPECT_EQ(fs::file_size(path("out/day_3.tsv")), 0u);
  EXPECT_EQ(sluice_test::split_lines(sluice_test::read_file(path("out/day_0.tsv"))).size(), 1u);
}

TEST_F(GenTest, DeterministicWhateverTheThreadCount) {
  // Two blocks per day and a short last block.
  const uint64_t rows = 2 * (16384 + 3000);
  gen("a", rows, 2, 7, 0.05, 1);
  gen("b", rows, 2, 7, 0.05, 3);
  gen("c", rows, 2, 8, 0.05, 2);
  for (std::string f : {"day_0.tsv", "day_1.tsv", "truth.json"}) {
    std::string a = sluice_test::read_file(path("a/" + f));
    EXPECT_FALSE(a.empty());
    EXPECT_TRUE(a == sluice_test::read_file(path("b/" + f))) << f;
  }
  EXPECT_NE(sluice_test::read_file(path("a/day_0.tsv")), sluice_test::read_file(path("c/day_0.tsv")));
  EXPECT_NE(sluice_test::read_file(path("a/day_1.tsv")), sluice_test::read_file(path("c/day_1.tsv")));
}

TEST_F(GenTest, StatisticsAreCriteoLike) {
  const double scale = 0.01;
  auto r = gen("out", 50000, 1, 3, scale, 2);
  auto lines = sluice_test::split_lines(sluice_test::read_file(path("out/day_0.tsv")));
  ASSERT_EQ(lines.size(), 50000u);

  std::vector<size_t> missing(sluice::kNumFields, 0);
  size_t positives = 0, negatives_i2 = 0;
  std::vector<std::unordered_map<std::string, size_t>> counts(sluice::kNumSparse);
  for (const auto& line : lines) {
    auto f = fields_of(line);
    ASSERT_EQ(f.size(), 40u) << line;
    ASSERT_TRUE(f[0] == "0" || f[0] == "1") << line;
    positives += f[0] == "1";
    for (int j = 1; j <= 13; ++j) {
      if (f[size_t(j)].empty()) {
        ++missing[size_t(j)];
        continue;
      }
      ASSERT_TRUE(is_int(f[size_t(j)])) << line;
      if (j == 2 && f[2][0] == '-') ++negatives_i2;
      if (j != 2) {
        ASSERT_NE(f[size_t(j)][0], '-') << line;
      }
    }
    for (int c = 0; c < sluice::kNumSparse; ++c) {
      const std::string& v = f[size_t(14 + c)];
      if (v.empty()) {
        ++missing[size_t(14 + c)];
        continue;
      }
      ASSERT_TRUE(is_hex8(v)) << line;
      ++counts[size_t(c)][v];
    }
  }
  const double n = double(lines.size());
  double ctr = double(positives) / n;
  EXPECT_NEAR(ctr, r.ctr, 1e-12);
  EXPECT_GT(ctr, 0.21);
  EXPECT_LT(ctr, 0.30);
  EXPECT_NEAR(double(negatives_i2) / n, sluice::gen_detail::kDense[1].negative, 0.01);

  for (int j = 0; j < sluice::kNumDense; ++j)
    EXPECT_NEAR(double(missing[size_t(1 + j)]) / n, sluice::gen_detail::kDense[size_t(j)].missing, 0.012)
        << "I" << j + 1;
  for (int c = 0; c < sluice::kNumSparse; ++c) {
    EXPECT_NEAR(double(missing[size_t(14 + c)]) / n, sluice::gen_detail::kSparse[size_t(c)].missing,
                0.012)
        << "C" << c + 1;
    uint64_t card = std::max<uint64_t>(1, uint64_t(std::llround(double(sluice::kKaggleCardinalities[size_t(c)]) * scale)));
    EXPECT_LE(counts[size_t(c)].size(), card) << "C" << c + 1;
    if (card >= 100) {
      // Heavy head: the top item is far more frequent than the median item.
      std::vector<size_t> freq;
      for (auto& kv : counts[size_t(c)]) freq.push_back(kv.second);
      std::sort(freq.begin(), freq.end());
      size_t median = freq[freq.size() / 2];
      EXPECT_GT(freq.back(), 20 * median) << "C" << c + 1;
    }
  }
  // A column scaled down to one item always has the same value.
  EXPECT_EQ(counts[8].size(), 1u);  // C9: round(3 * 0.01) -> 1
}

TEST_F(GenTest, TruthJsonDescribesTheData) {
  auto r = gen("out", 30000, 3, 5, 0.1, 2);
  auto t = nlohmann::json::parse(sluice_test::read_file(path("out/truth.json")));
  EXPECT_EQ(t["format"], "criteo-tsv");
  EXPECT_EQ(t["rows"], 30000);
  EXPECT_EQ(t["days"], 3);
  EXPECT_EQ(t["seed"], 5);
  EXPECT_DOUBLE_EQ(t["cardinality_scale"].get<double>(), 0.1);
  ASSERT_EQ(t["cardinalities"].size(), 26u);
  for (size_t c = 0; c < 26; ++c) {
    uint64_t expect = std::max<uint64_t>(1, uint64_t(std::llround(double(sluice::kKaggleCardinalities[c]) * 0.1)));
    EXPECT_EQ(t["cardinalities"][c].get<uint64_t>(), expect);
  }
  EXPECT_DOUBLE_EQ(t["ctr"].get<double>(), r.ctr);
  double auc = t["oracle_test_auc"].get<double>();
  EXPECT_DOUBLE_EQ(auc, r.oracle_test_auc);
  EXPECT_GT(auc, 0.6);
  EXPECT_LT(auc, 0.95);
  EXPECT_EQ(t["test_rows"], 5000);
  ASSERT_TRUE(t.contains("model"));
  EXPECT_EQ(t["model"]["dense"].size(), 13u);
  EXPECT_EQ(t["model"]["sparse"].size(), 26u);
  EXPECT_TRUE(t["model"]["bias"].is_number());
}

TEST_F(GenTest, RefusesNonEmptyDirectoryUnlessOverwrite) {
  fs::create_directories(path("out"));
  std::ofstream(path("out/keep.txt")) << "precious";
  EXPECT_THROW(gen("out", 100, 1, 1, 1.0, 1), sluice::Error);
  EXPECT_EQ(sluice_test::read_file(path("out/keep.txt")), "precious");
  EXPECT_EQ(entries(), std::vector<std::string>{"out"});

  // --overwrite never replaces a directory sluice did not write.
  sluice::GenOptions o;
  o.rows = 100;
  o.out = path("out");
  o.overwrite = true;
  o.sync = false;
  EXPECT_THROW(sluice::generate(o), sluice::Error);
  EXPECT_EQ(sluice_test::read_file(path("out/keep.txt")), "precious");

  // It replaces an earlier output of sluice.
  fs::remove(path("out/keep.txt"));
  gen("out", 100, 1, 1, 1.0, 1);
  o.rows = 50;
  sluice::generate(o);
  EXPECT_TRUE(fs::exists(path("out/day_0.tsv")));
  EXPECT_EQ(entries(), std::vector<std::string>{"out"});

  // An existing empty directory is fine.
  fs::create_directories(path("empty"));
  gen("empty", 100, 1, 1, 1.0, 1);
  EXPECT_TRUE(fs::exists(path("empty/truth.json")));
}

TEST_F(GenTest, LeavesNothingBehindOnFailure) {
  // The parent is a regular file.
  std::ofstream(path("file")) << "x";
  EXPECT_THROW(gen("file/out", 100, 1, 1, 1.0, 1), sluice::Error);
  // A missing parent is created.
  EXPECT_NO_THROW(gen("missing/out", 100, 1, 1, 1.0, 1));
  EXPECT_TRUE(fs::exists(path("missing/out/day_0.tsv")));
  fs::remove_all(path("missing"));
  // An unwritable parent (root ignores permissions, so only check it as another user).
  if (::geteuid() != 0) {
    fs::create_directories(path("ro"));
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW(gen("ro/out", 100, 1, 1, 1.0, 1), sluice::Error);
    fs::permissions(path("ro"), fs::perms::owner_all);
    EXPECT_TRUE(fs::is_empty(path("ro")));
    fs::remove(path("ro"));
  }
  EXPECT_EQ(entries(), std::vector<std::string>{"file"});
  // Bad options fail before anything is created.
  EXPECT_THROW(gen("out", 0, 1, 1, 1.0, 1), sluice::Error);
  EXPECT_THROW(gen("out", 10, 0, 1, 1.0, 1), sluice::Error);
  EXPECT_THROW(gen("out", 10, 1, 1, 0.0, 1), sluice::Error);
  EXPECT_EQ(entries(), std::vector<std::string>{"file"});
}

#if defined(SLUICE_BINARY)
TEST_F(GenTest, CliPrintsOneLineSummary) {
  auto run = [&](const std::string& args) {
    std::string cmd = std::string("'") + SLUICE_BINARY + "' gen " + args + " >'" + path("stdout") +
                      "' 2>'" + path("stderr") + "' </dev/null";
    return std::system(cmd.c_str());
  };
  const std::string args = "--rows 2000 --days 2 --seed 3 --cardinality-scale 0.01 --threads 2 "
                           "--no-sync --out '" + path("out") + "'";
  ASSERT_EQ(run(args), 0) << sluice_test::read_file(path("stderr"));
  auto out = sluice_test::split_lines(sluice_test::read_file(path("stdout")));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rfind("gen: 2000 rows, ", 0), 0u) << out[0];
  EXPECT_NE(out[0].find("MB/s"), std::string::npos) << out[0];
  EXPECT_NE(out[0].find("ctr 0."), std::string::npos) << out[0];
  EXPECT_NE(out[0].find("oracle_test_auc "), std::string::npos) << out[0];
  EXPECT_EQ(sluice_test::read_file(path("stderr")), "");  // no progress when stderr is not a terminal
  EXPECT_TRUE(fs::exists(path("out/day_1.tsv")));
  EXPECT_TRUE(fs::exists(path("out/truth.json")));

  EXPECT_NE(run(args), 0);  // refuses the now non-empty directory
  EXPECT_NE(sluice_test::read_file(path("stderr")).find("not empty"), std::string::npos);
  EXPECT_EQ(run(args + " --overwrite"), 0) << sluice_test::read_file(path("stderr"));
}
#endif
