// Helpers shared by the trainer tests: in-memory datasets and batch streams, small models, temporary
// directories, checkpoint comparison, running the `sluice` binary.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sluice/batch.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"
#include "util/fs_ops.hpp"

namespace sluice_train_test {

namespace fs = std::filesystem;
namespace st = sluice::train;

constexpr int kT = sluice::kNumSparse;
constexpr int kD = sluice::kNumDense;

// An in-memory dataset with a learnable click model: a few tables and dense features carry signal.
struct Rows {
  std::vector<float> dense, labels;
  std::vector<float> true_logit;  // the click model's logit (for the oracle AUC)
  std::vector<int32_t> sparse;
  int64_t n = 0;
};

struct Data {
  Rows train, test;
  std::vector<int64_t> tables;
};

inline Rows make_rows(int64_t n, const std::vector<int64_t>& tables, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Rows r;
  r.n = n;
  for (int64_t i = 0; i < n; ++i) {
    double logit = -1.0;
    for (int j = 0; j < kD; ++j) {
      const float x = u(rng) * 4.f;
      r.dense.push_back(x);
      if (j < 3) logit += (j == 1 ? -0.8 : 0.6) * (x - 2.0);
    }
    for (int t = 0; t < kT; ++t) {
      const int32_t id = static_cast<int32_t>(rng() % static_cast<uint32_t>(tables[t]));
      r.sparse.push_back(id);
      if (t < 4) logit += ((id * 2654435761u >> 7) % 5 - 2.0) * 0.7;  // a fixed per-id effect
    }
    const double p = 1 / (1 + std::exp(-logit));
    r.true_logit.push_back(static_cast<float>(logit));
    r.labels.push_back(u(rng) < p ? 1.f : 0.f);
  }
  return r;
}

inline Data make_data(int64_t train_rows, int64_t test_rows, uint32_t seed = 1, int64_t table = 40) {
  Data d;
  for (int t = 0; t < kT; ++t) d.tables.push_back(table + t);
  d.train = make_rows(train_rows, d.tables, seed);
  d.test = make_rows(test_rows, d.tables, seed + 1000);
  return d;
}

// Serves rows from memory, as a producer with a ring of `depth` slots would: asking for a batch while
// `depth` leases are outstanding is a deadlock in a real producer, so it fails the test here.
class VectorStream : public sluice::BatchStream {
 public:
  VectorStream(const Rows& rows, uint64_t start, int64_t batch, int depth, std::function<void(int64_t)> on_batch)
      : rows_(rows), pos_(static_cast<int64_t>(start)), batch_(batch), depth_(depth),
        outstanding_(std::make_shared<int>(0)), on_batch_(std::move(on_batch)) {}
  ~VectorStream() override { EXPECT_EQ(*outstanding_, 0) << "a lease outlived its stream"; }
  sluice::Lease next() override {
    if (*outstanding_ >= depth_) {
      ADD_FAILURE() << "next() with " << *outstanding_ << " leases held: a real producer would block forever";
      throw sluice::Error("ring exhausted");
    }
    if (pos_ >= rows_.n) return {};
    const int64_t n = std::min(batch_, rows_.n - pos_);
    sluice::BatchView v;
    v.rows = n;
    v.dense = rows_.dense.data() + pos_ * kD;
    v.sparse = rows_.sparse.data() + pos_ * kT;
    v.labels = rows_.labels.data() + pos_;
    v.memory = sluice::MemoryKind::kHost;
    v.first_row = static_cast<uint64_t>(pos_);
    pos_ += n;
    ++*outstanding_;
    ++served_;
    if (on_batch_) on_batch_(served_);
    auto out = outstanding_;
    return sluice::Lease(v, [out] { --*out; });
  }
  double wait_seconds() const override { return 0.001 * static_cast<double>(served_); }

 private:
  const Rows& rows_;
  int64_t pos_;
  int64_t batch_;
  int depth_;
  std::shared_ptr<int> outstanding_;
  std::function<void(int64_t)> on_batch_;
  int64_t served_ = 0;
};

inline st::StreamFactory factory_for(const Data& d, int depth = 4, std::function<void(int64_t)> on_batch = {}) {
  return [&d, depth, on_batch](sluice::Split s, uint64_t start, int64_t batch) {
    const Rows& r = s == sluice::Split::kTrain ? d.train : d.test;
    return std::make_unique<VectorStream>(r, start, batch, depth,
                                          s == sluice::Split::kTrain ? on_batch : std::function<void(int64_t)>());
  };
}

inline st::TrainOptions small_options(const Data& d) {
  st::TrainOptions o;
  o.arch.emb_dim = 8;
  o.arch.bot_mlp = {kD, 16, 8};
  o.arch.top_mlp = {st::interaction_width(8), 16, 1};
  o.arch.table_sizes = d.tables;
  o.batch_size = 64;
  o.test_batch_size = 100;
  o.seed = 5;
  o.threads = 1;
  o.print_freq = 3;
  return o;
}

// A fresh directory under $SLUICE_TEST_TMPDIR (else the system temp dir), removed on destruction
// (with sluice's own remove_tree: std::filesystem::remove_all is not safe next to libtorch).
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    const char* env = std::getenv("SLUICE_TEST_TMPDIR");
    const fs::path base = env && *env ? fs::path(env) : fs::temp_directory_path();
    path = base / ("sluice_train_" + name + "_" + std::to_string(::getpid()) + "_" +
                   std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() { sluice::fsops::remove_tree(path.string()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

inline std::string ckpt(const std::string& dir) { return (fs::path(dir) / "checkpoint.sluice").string(); }

inline void expect_same_state(const std::string& a, const std::string& b) {
  const auto ta = st::load_checkpoint_tensors(a), tb = st::load_checkpoint_tensors(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name << " differs; max |diff| "
                                              << (t - tb.at(name)).abs().max().item<double>();
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sluice::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A sluice::Error: ") + e.what();
  }
  return "NO ERROR";
}

inline void flip_byte(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x20);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
}


// Runs a shell command; returns its stdout and sets *status (as from pclose).
inline std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

inline std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.find_last_of('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

}  // namespace sluice_train_test
