// The trainer's GPU kernels (src/trainer/cuda) against their plain double-precision references
// (src/trainer/cuda/reference.hpp): the row gather, the sparse reduction and the SGD / row-wise Adagrad
// updates over distinct, equal, skewed and Kaggle-like ids, determinism, graph capture, and the dot
// interaction both ways. Outputs are poisoned (NaN) before each kernel runs. Skipped without a GPU.
#include <gtest/gtest.h>

#if defined(SLUICE_TRAIN_CUDA)

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "trainer/cuda/embedding.hpp"
#include "trainer/cuda/interaction.hpp"
#include "trainer/cuda/numerics.hpp"
#include "trainer/cuda/reference.hpp"

namespace {

namespace k = sluice::train::kernels;
namespace ref = sluice::train::kernels::ref;

constexpr double kTol = 1e-5;

bool have_gpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define REQUIRE_GPU()                                  \
  do {                                                 \
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU"; \
  } while (0)

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device buffer of n elements (plus `pad` elements before the pointer handed out, to misalign it).
template <class T>
struct Dev {
  T* base = nullptr;
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count, size_t pad = 0) : n(count) {
    ck(cudaMalloc(&base, std::max<size_t>(count + pad, 1) * sizeof(T)), "cudaMalloc");
    p = base + pad;
  }
  explicit Dev(const std::vector<T>& v, size_t pad = 0) : Dev(v.size(), pad) { upload(v); }
  ~Dev() { cudaFree(base); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void upload(const std::vector<T>& v) {
    ck(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    ck(cudaDeviceSynchronize(), "kernel");
    ck(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return v;
  }
  void poison() { ck(cudaMemset(p, 0xff, n * sizeof(T)), "poison"); }  // float NaN, integer -1
};

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

size_t count_nan(const std::vector<float>& v, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += std::isnan(v[i]) ? 1 : 0;
  return c;
}

// ---- id sets ------------------------------------------------------------------------------------

enum class Dist { kDistinct, kAllEqual, kKaggle, kSmallRange };

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::kDistinct: return "distinct";
    case Dist::kAllEqual: return "all-equal";
    case Dist::kKaggle: return "kaggle-zipf";
    case Dist::kSmallRange: return "small-range";
  }
  return "?";
}

struct Ids {
  std::vector<int64_t> ids;
  int64_t total_rows = 0;
};

// n ids (kKaggle: n is rounded to whole samples of 26 lookups). Tables stay small enough to mirror on
// the host: about 8M floats of table.
Ids make_ids(Dist dist, int64_t n, int64_t d, std::mt19937_64& rng) {
  Ids r;
  switch (dist) {
    case Dist::kDistinct: {
      r.total_rows = n + n / 3 + 5;
      std::vector<int64_t> all(size_t(r.total_rows));
      std::iota(all.begin(), all.end(), int64_t(0));
      std::shuffle(all.begin(), all.end(), rng);
      r.ids.assign(all.begin(), all.begin() + n);
      break;
    }
    case Dist::kAllEqual: {
      r.total_rows = 1000;
      r.ids.assign(size_t(n), int64_t(rng() % 1000));
      break;
    }
    case Dist::kSmallRange: {
      r.total_rows = 97;
      for (int64_t i = 0; i < n; ++i) r.ids.push_back(int64_t(rng() % 97));
      break;
    }
    case Dist::kKaggle: {
      // The Kaggle cardinalities, capped; ids log-uniform within each table (a Zipf-like head: the
      // smallest ids repeat most), so the 3-, 4- and 10-row tables repeat thousands of times.
      const int64_t cap = std::max<int64_t>(16, int64_t(8'000'000) / (26 * d));
      std::vector<int64_t> card(26), off(26);
      for (int t = 0; t < 26; ++t) {
        card[size_t(t)] = std::min<int64_t>(int64_t(sluice::kKaggleCardinalities[size_t(t)]), cap);
        off[size_t(t)] = r.total_rows;
        r.total_rows += card[size_t(t)];
      }
      std::uniform_real_distribution<double> u(0.0, 1.0);
      const int64_t batch = std::max<int64_t>(1, n / 26);
      for (int64_t b = 0; b < batch; ++b)
        for (int t = 0; t < 26; ++t) {
          const double c = double(card[size_t(t)]);
          int64_t v = int64_t(std::floor(std::exp(u(rng) * std::log(c + 1.0)))) - 1;
          v = std::clamp<int64_t>(v, 0, card[size_t(t)] - 1);
          r.ids.push_back(off[size_t(t)] + v);
        }
      break;
    }
  }
  return r;
}

template <class Id>
std::vector<Id> as(const std::vector<int64_t>& v) {
  return std::vector<Id>(v.begin(), v.end());
}

// ---- gather -------------------------------------------------------------------------------------

template <class Id>
void check_gather(int64_t rows, int64_t d, int64_t n, size_t out_pad, std::mt19937_64& rng) {
  SCOPED_TRACE("gather d=" + std::to_string(d) + " n=" + std::to_string(n) + " id bytes=" +
               std::to_string(sizeof(Id)) + " out_pad=" + std::to_string(out_pad));
  const std::vector<float> table = uniform(size_t(rows * d), -1.f, 1.f, rng);
  std::vector<Id> ids(static_cast<size_t>(n));
  for (auto& i : ids) i = Id(rng() % uint64_t(rows));
  std::vector<float> want(size_t(n * d));
  ref::gather_rows(table.data(), d, ids.data(), n, want.data());
  Dev<float> dt(table);
  Dev<Id> di(ids);
  Dev<float> out(size_t(n * d), out_pad);
  out.poison();
  k::gather_rows(dt.p, d, di.p, n, out.p, nullptr);
  const std::vector<float> got = out.download();
  EXPECT_EQ(count_nan(got, got.size()), 0u);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
}

TEST(CudaKernels, GatherRows) {
  REQUIRE_GPU();
  std::mt19937_64 rng(101);
  for (int64_t d : {1, 3, 16, 64, 128}) {
    check_gather<int32_t>(5003, d, 10007, 0, rng);
    check_gather<int64_t>(5003, d, 10007, 0, rng);
  }
  check_gather<int32_t>(100, 16, 1, 0, rng);
  check_gather<int32_t>(100, 16, 777, 1, rng);  // misaligned output: the scalar path
  k::gather_rows(nullptr, 16, static_cast<const int32_t*>(nullptr), 0, nullptr, nullptr);  // n = 0: nothing
}

// ---- sparse reduction ---------------------------------------------------------------------------

template <class Id>
void check_reduce(const Ids& c, int64_t d, std::mt19937_64& rng) {
  const int64_t n = int64_t(c.ids.size());
  SCOPED_TRACE("reduce d=" + std::to_string(d) + " n=" + std::to_string(n) + " id bytes=" + std::to_string(sizeof(Id)));
  const std::vector<Id> ids = as<Id>(c.ids);
  const std::vector<float> grad = uniform(size_t(n * d), -1.f, 1.f, rng);
  const ref::Reduced want = ref::reduce_by_id(ids.data(), n, grad.data(), d);

  Dev<Id> di(ids);
  Dev<float> dg(grad);
  Dev<int64_t> uniq(size_t(std::max<int64_t>(n, 1)));
  Dev<float> sums(size_t(std::max<int64_t>(n, 1) * d));
  Dev<int64_t> count(1);
  uniq.poison();
  sums.poison();
  count.poison();
  const size_t wsb = k::sparse_update_workspace_bytes(n, d, c.total_rows);
  Dev<char> ws(wsb);
  k::sparse_reduce(c.total_rows, d, di.p, dg.p, n, uniq.p, sums.p, count.p, ws.p, wsb, nullptr);
  const int64_t u = count.download()[0];
  ASSERT_EQ(u, int64_t(want.ids.size()));
  std::vector<int64_t> got_ids = uniq.download();
  got_ids.resize(size_t(u));
  EXPECT_EQ(got_ids, want.ids);
  const std::vector<float> got = sums.download();
  EXPECT_EQ(count_nan(got, size_t(u * d)), 0u);
  EXPECT_LT(ref::relative_error(got.data(), want.sums.data(), size_t(u * d)), kTol);
}

TEST(CudaKernels, SparseReduce) {
  REQUIRE_GPU();
  std::mt19937_64 rng(202);
  for (int64_t d : {16, 64, 128, 5}) {
    for (Dist dist : {Dist::kDistinct, Dist::kAllEqual, Dist::kKaggle, Dist::kSmallRange}) {
      SCOPED_TRACE(dist_name(dist));
      const int64_t n = dist == Dist::kAllEqual ? 16384 : dist == Dist::kKaggle ? 4099 * 26 : 100003;
      const Ids c = make_ids(dist, n, d, rng);
      check_reduce<int32_t>(c, d, rng);
      check_reduce<int64_t>(c, d, rng);
    }
  }
  // Small n around the tile size.
  for (int64_t n : {1, 2, 31, 32, 33, 63, 65, 257}) {
    check_reduce<int32_t>(make_ids(Dist::kSmallRange, n, 16, rng), 16, rng);
    check_reduce<int64_t>(make_ids(Dist::kAllEqual, n, 16, rng), 16, rng);
  }
  // Every lookup of a whole Kaggle batch on one id: one span of 13312 tiles.
  check_reduce<int32_t>(make_ids(Dist::kAllEqual, 16384 * 26, 16, rng), 16, rng);
}

TEST(CudaKernels, SparseReduceWideIds) {
  REQUIRE_GPU();
  // total_rows beyond 2^32: 64-bit sort keys (no table is touched by the reduction).
  std::mt19937_64 rng(303);
  Ids c;
  c.total_rows = int64_t(1) << 33;
  for (int i = 0; i < 50000; ++i) c.ids.push_back(int64_t(rng() % uint64_t(c.total_rows)));
  for (int i = 0; i < 5000; ++i) c.ids.push_back(c.ids[size_t(rng() % 1000)]);  // duplicates
  for (int i = 0; i < 3000; ++i) c.ids.push_back(c.total_rows - 1);
  std::shuffle(c.ids.begin(), c.ids.end(), rng);
  check_reduce<int64_t>(c, 16, rng);
}

TEST(CudaKernels, SparseReduceEmpty) {
  REQUIRE_GPU();
  EXPECT_EQ(k::sparse_update_workspace_bytes(0, 16, 100), 0u);
  Dev<int64_t> count(1);
  count.poison();
  k::sparse_reduce(100, 16, static_cast<const int32_t*>(nullptr), nullptr, 0, nullptr, nullptr, count.p, nullptr, 0,
                   nullptr);
  EXPECT_EQ(count.download()[0], 0);
}

// ---- sparse updates -----------------------------------------------------------------------------

enum class Opt { kSgd, kAdagrad };

struct UpdateRun {
  std::vector<float> table, state;
};

template <class Id>
UpdateRun run_update(Opt opt, const std::vector<float>& table0, const std::vector<float>& state0, int64_t total_rows,
                     int64_t d, const std::vector<Id>& ids, const std::vector<float>& grad, float lr, float eps) {
  const int64_t n = int64_t(ids.size());
  Dev<float> dt(table0), dst(state0), dg(grad), dlr(std::vector<float>{lr});
  Dev<Id> di(ids);
  const size_t wsb = k::sparse_update_workspace_bytes(n, d, total_rows);
  Dev<char> ws(wsb);
  ws.poison();
  if (opt == Opt::kSgd) k::sparse_sgd(dt.p, total_rows, d, di.p, dg.p, n, dlr.p, ws.p, wsb, nullptr);
  else k::sparse_adagrad(dt.p, dst.p, total_rows, d, di.p, dg.p, n, dlr.p, eps, ws.p, wsb, nullptr);
  return {dt.download(), dst.download()};
}

// Compares an update against the reference: the change of every touched row relative to the reference's
// change, the state likewise; untouched rows (and their state) bitwise unchanged.
void expect_update_matches(const std::vector<float>& table0, const std::vector<float>& state0,
                           const std::vector<double>& want_table, const std::vector<double>& want_state,
                           const std::set<int64_t>& touched, int64_t total_rows, int64_t d, const UpdateRun& got,
                           bool adagrad) {
  std::vector<double> got_delta, want_delta, got_s, want_s;
  size_t changed_untouched = 0;
  for (int64_t r = 0; r < total_rows; ++r) {
    const size_t o = size_t(r * d);
    if (touched.count(r) == 0) {
      changed_untouched += std::memcmp(&got.table[o], &table0[o], size_t(d) * sizeof(float)) != 0;
      changed_untouched += std::memcmp(&got.state[size_t(r)], &state0[size_t(r)], sizeof(float)) != 0;
      continue;
    }
    for (int64_t c = 0; c < d; ++c) {
      got_delta.push_back(double(got.table[o + size_t(c)]) - double(table0[o + size_t(c)]));
      want_delta.push_back(want_table[o + size_t(c)] - double(table0[o + size_t(c)]));
    }
    if (adagrad) {
      got_s.push_back(double(got.state[size_t(r)]) - double(state0[size_t(r)]));
      want_s.push_back(want_state[size_t(r)] - double(state0[size_t(r)]));
    }
  }
  EXPECT_EQ(changed_untouched, 0u);
  EXPECT_EQ(count_nan(got.table, got.table.size()), 0u);
  EXPECT_LT(ref::relative_error(got_delta.data(), want_delta.data(), want_delta.size()), kTol);
  if (adagrad) {
    EXPECT_EQ(count_nan(got.state, got.state.size()), 0u);
    EXPECT_LT(ref::relative_error(got_s.data(), want_s.data(), want_s.size()), kTol);
  }
}

template <class Id>
void check_update(Opt opt, const Ids& c, int64_t d, std::mt19937_64& rng, bool twice = true) {
  const int64_t n = int64_t(c.ids.size());
  SCOPED_TRACE(std::string(opt == Opt::kSgd ? "sgd" : "adagrad") + " d=" + std::to_string(d) + " n=" +
               std::to_string(n) + " id bytes=" + std::to_string(sizeof(Id)));
  const float lr = 0.1f, eps = 1e-10f;
  const std::vector<Id> ids = as<Id>(c.ids);
  const std::vector<float> table0 = uniform(size_t(c.total_rows * d), -1.f, 1.f, rng);
  const std::vector<float> state0 = uniform(size_t(c.total_rows), 0.1f, 1.f, rng);
  const std::vector<float> grad = uniform(size_t(n * d), -1.f, 1.f, rng);

  std::vector<double> want_table(table0.begin(), table0.end()), want_state(state0.begin(), state0.end());
  const ref::Reduced red = ref::reduce_by_id(ids.data(), n, grad.data(), d);
  if (opt == Opt::kSgd) ref::sgd_update(want_table, d, red, lr);
  else ref::adagrad_update(want_table, want_state, d, red, lr, eps);
  const std::set<int64_t> touched(red.ids.begin(), red.ids.end());

  const UpdateRun got = run_update(opt, table0, state0, c.total_rows, d, ids, grad, lr, eps);
  expect_update_matches(table0, state0, want_table, want_state, touched, c.total_rows, d, got, opt == Opt::kAdagrad);
  if (twice) {
    // Deterministic: the same start gives the same bits.
    const UpdateRun again = run_update(opt, table0, state0, c.total_rows, d, ids, grad, lr, eps);
    EXPECT_EQ(std::memcmp(got.table.data(), again.table.data(), got.table.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(got.state.data(), again.state.data(), got.state.size() * sizeof(float)), 0);
  }
}

void update_suite(Opt opt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int64_t d : {16, 64, 128, 6}) {
    for (Dist dist : {Dist::kDistinct, Dist::kAllEqual, Dist::kKaggle, Dist::kSmallRange}) {
      SCOPED_TRACE(dist_name(dist));
      const int64_t n = dist == Dist::kAllEqual ? 16384 : dist == Dist::kKaggle ? 4099 * 26 : 100003;
      const Ids c = make_ids(dist, n, d, rng);
      check_update<int32_t>(opt, c, d, rng);
      check_update<int64_t>(opt, c, d, rng, false);
    }
  }
  for (int64_t n : {1, 2, 33, 1000}) check_update<int32_t>(opt, make_ids(Dist::kSmallRange, n, 16, rng), 16, rng);
  check_update<int32_t>(opt, make_ids(Dist::kAllEqual, 16384 * 26, 16, rng), 16, rng);
}

TEST(CudaKernels, SparseSgd) {
  REQUIRE_GPU();
  update_suite(Opt::kSgd, 404);
}

TEST(CudaKernels, SparseAdagrad) {
  REQUIRE_GPU();
  update_suite(Opt::kAdagrad, 505);
}

TEST(CudaKernels, SparseUpdateEdges) {
  REQUIRE_GPU();
  std::mt19937_64 rng(606);
  const int64_t rows = 50, d = 8;
  const std::vector<float> table0 = uniform(size_t(rows * d), -1.f, 1.f, rng);
  Dev<float> dt(table0), dlr(std::vector<float>{0.5f});
  // n = 0: nothing happens, no workspace needed.
  k::sparse_sgd(dt.p, rows, d, static_cast<const int32_t*>(nullptr), nullptr, 0, dlr.p, nullptr, 0, nullptr);
  EXPECT_EQ(dt.download(), table0);
  // Ids outside [0, rows) are skipped; the valid ones are applied.
  const std::vector<int32_t> ids = {-1, 3, 50, 3, 1000, 7};
  const std::vector<float> grad = uniform(ids.size() * size_t(d), -1.f, 1.f, rng);
  Dev<int32_t> di(ids);
  Dev<float> dg(grad);
  const size_t wsb = k::sparse_update_workspace_bytes(int64_t(ids.size()), d, rows);
  Dev<char> ws(wsb);
  // A workspace too small is refused.
  EXPECT_THROW(k::sparse_sgd(dt.p, rows, d, di.p, dg.p, int64_t(ids.size()), dlr.p, ws.p, wsb - 1, nullptr),
               sluice::Error);
  k::sparse_sgd(dt.p, rows, d, di.p, dg.p, int64_t(ids.size()), dlr.p, ws.p, wsb, nullptr);
  const std::vector<float> got = dt.download();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) {
      double want = table0[size_t(r * d + c)];
      if (r == 3) want -= 0.5 * (double(grad[size_t(1 * d + c)]) + double(grad[size_t(3 * d + c)]));
      if (r == 7) want -= 0.5 * double(grad[size_t(5 * d + c)]);
      if (r == 3 || r == 7) EXPECT_NEAR(got[size_t(r * d + c)], want, 1e-6) << r << "," << c;
      else EXPECT_EQ(got[size_t(r * d + c)], table0[size_t(r * d + c)]) << r << "," << c;
    }
}

// ---- half-precision tables -----------------------------------------------------------------------
// A half table's update is the float32 table's update (same kernels, same sums) rounded when stored: so
// the float32 update of the widened table, rounded on the host with numerics.hpp (to nearest, or
// stochastically with the bits of (seed, row, column)), must give the half kernel's bits exactly.

uint16_t narrow_host(float v, k::Elem e, bool sr, uint32_t r) {
  if (e == k::Elem::kF16) return sr ? sluice::train::num::f32_to_f16_sr(v, r) : sluice::train::num::f32_to_f16_rn(v);
  return sr ? sluice::train::num::f32_to_bf16_sr(v, r) : sluice::train::num::f32_to_bf16_rn(v);
}
float widen_host(uint16_t h, k::Elem e) {
  return e == k::Elem::kF16 ? sluice::train::num::f16_to_f32(h) : sluice::train::num::bf16_to_f32(h);
}
const char* elem_name(k::Elem e) { return e == k::Elem::kF16 ? "fp16" : e == k::Elem::kBF16 ? "bf16" : "fp32"; }

TEST(CudaKernels, HalfTablesGatherWidensExactly) {
  REQUIRE_GPU();
  std::mt19937_64 rng(707);
  for (k::Elem e : {k::Elem::kF16, k::Elem::kBF16})
    for (int64_t d : {16, 6, 128}) {
      SCOPED_TRACE(std::string(elem_name(e)) + " d=" + std::to_string(d));
      const int64_t rows = 3001, n = 7919;
      std::vector<uint16_t> table(size_t(rows * d));
      for (auto& h : table) h = narrow_host(std::uniform_real_distribution<float>(-1.f, 1.f)(rng), e, false, 0);
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (auto& i : ids) i = int32_t(rng() % uint64_t(rows));
      Dev<uint16_t> dt(table);
      Dev<int32_t> di(ids);
      Dev<float> out(size_t(n * d));
      out.poison();
      k::gather_rows(k::TableRef{dt.p, e, rows, d}, di.p, n, out.p, nullptr);
      const std::vector<float> got = out.download();
      size_t bad = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < d; ++c)
          bad += got[size_t(i * d + c)] != widen_host(table[size_t(ids[size_t(i)] * d + c)], e);
      EXPECT_EQ(bad, 0u);
    }
}

TEST(CudaKernels, HalfTablesInitRowsMatchTheHostValues) {
  REQUIRE_GPU();
  namespace num = sluice::train::num;
  const int64_t rows = 2000, d = 24, first = 123456;
  for (k::Elem e : {k::Elem::kF32, k::Elem::kF16, k::Elem::kBF16}) {
    SCOPED_TRACE(elem_name(e));
    Dev<char> dst(size_t(rows * d) * k::elem_bytes(e));
    dst.poison();
    k::init_rows(dst.p, e, 99, 7, first, rows, d, 0.02f, nullptr);
    const std::vector<char> got = dst.download();
    const uint64_t key = num::init_table_key(99, 7);
    size_t bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < d; ++j) {
        const float v = num::init_value(num::init_row_key(key, first + r), j, 0.02f);
        const size_t i = size_t(r * d + j);
        if (e == k::Elem::kF32) {
          float g;
          std::memcpy(&g, &got[i * 4], 4);
          bad += num::f32_bits(g) != num::f32_bits(v);
        } else {
          uint16_t g;
          std::memcpy(&g, &got[i * 2], 2);
          bad += g != narrow_host(v, e, false, 0);
        }
      }
    EXPECT_EQ(bad, 0u);
  }
}

void check_half_update(Opt opt, k::Elem e, const Ids& c, int64_t d, std::mt19937_64& rng) {
  const int64_t n = int64_t(c.ids.size());
  SCOPED_TRACE(std::string(opt == Opt::kSgd ? "sgd " : "adagrad ") + elem_name(e) + " d=" + std::to_string(d) +
               " n=" + std::to_string(n));
  const float lr = 0.05f, eps = 1e-10f;
  const std::vector<int32_t> ids = as<int32_t>(c.ids);
  std::vector<uint16_t> half0(size_t(c.total_rows * d));
  for (auto& h : half0) h = narrow_host(std::uniform_real_distribution<float>(-1.f, 1.f)(rng), e, false, 0);
  std::vector<float> wide0(half0.size());
  for (size_t i = 0; i < half0.size(); ++i) wide0[i] = widen_host(half0[i], e);
  const std::vector<float> state0 = uniform(size_t(c.total_rows), 0.1f, 1.f, rng);
  // Small gradients: most updates are a fraction of a half's last place, where rounding matters.
  const std::vector<float> grad = uniform(size_t(n * d), -0.01f, 0.01f, rng);
  const UpdateRun f32 = run_update(opt, wide0, state0, c.total_rows, d, ids, grad, lr, eps);

  const uint64_t seed = 0x1234567890ABCDEFull;
  for (bool sr : {false, true}) {
    SCOPED_TRACE(sr ? "stochastic" : "to nearest");
    Dev<uint16_t> dt(half0);
    Dev<float> dst(state0), dg(grad), dlr(std::vector<float>{lr});
    Dev<uint64_t> dseed(std::vector<uint64_t>{seed});
    Dev<int32_t> di(ids);
    const size_t wsb = k::sparse_update_workspace_bytes(n, d, c.total_rows);
    Dev<char> ws(wsb);
    const k::TableRef t{dt.p, e, c.total_rows, d};
    const uint64_t* sp = sr ? dseed.p : nullptr;
    if (opt == Opt::kSgd) k::sparse_sgd(t, di.p, dg.p, n, dlr.p, sp, ws.p, wsb, nullptr);
    else k::sparse_adagrad(t, dst.p, di.p, dg.p, n, dlr.p, eps, sp, ws.p, wsb, nullptr);
    const std::vector<uint16_t> got = dt.download();
    const std::vector<float> got_state = dst.download();
    size_t bad = 0, moved = 0;
    for (int64_t r = 0; r < c.total_rows; ++r)
      for (int64_t col = 0; col < d; ++col) {
        const size_t i = size_t(r * d + col);
        const bool touched = std::memcmp(&f32.table[i], &wide0[i], 4) != 0;
        const uint16_t want = touched ? narrow_host(f32.table[i], e, sr,
                                                    sluice::train::num::rounding_bits(seed, uint64_t(r), uint32_t(col)))
                                      : half0[i];
        bad += got[i] != want;
        moved += got[i] != half0[i];
      }
    EXPECT_EQ(bad, 0u);
    EXPECT_GT(moved, 0u);
    EXPECT_EQ(std::memcmp(got_state.data(), f32.state.data(), got_state.size() * 4), 0);  // state is float32
  }
}

TEST(CudaKernels, HalfTablesUpdateIsTheFloat32UpdateRounded) {
  REQUIRE_GPU();
  std::mt19937_64 rng(808);
  for (k::Elem e : {k::Elem::kF16, k::Elem::kBF16})
    for (Opt opt : {Opt::kSgd, Opt::kAdagrad})
      for (int64_t d : {16, 6, 128})
        for (Dist dist : {Dist::kDistinct, Dist::kKaggle, Dist::kSmallRange}) {
          SCOPED_TRACE(dist_name(dist));
          const int64_t n = dist == Dist::kKaggle ? 1031 * 26 : 30011;
          check_half_update(opt, e, make_ids(dist, n, d, rng), d, rng);
        }
}

// Stochastic rounding keeps updates far below a half's last place: 2000 rows of bfloat16 ones, each
// moved by -lr * g = -0.3 of bfloat16's spacing just below 1 (2^-8), land on average where float32
// would (1 - 0.3 * 2^-8); rounding to nearest leaves them all at 1.
TEST(CudaKernels, HalfTablesStochasticRoundingIsUnbiased) {
  REQUIRE_GPU();
  const int64_t rows = 2000, d = 64;
  const k::Elem e = k::Elem::kBF16;
  const uint16_t one = sluice::train::num::f32_to_bf16_rn(1.f);
  const float ulp = 1.f / 256.f, step = 0.3f * ulp;
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  std::iota(ids.begin(), ids.end(), 0);
  const std::vector<float> grad(size_t(rows * d), step);
  for (bool sr : {false, true}) {
    Dev<uint16_t> dt(std::vector<uint16_t>(size_t(rows * d), one));
    Dev<float> dg(grad), dlr(std::vector<float>{1.f});
    Dev<uint64_t> dseed(std::vector<uint64_t>{42});
    Dev<int32_t> di(ids);
    const size_t wsb = k::sparse_update_workspace_bytes(rows, d, rows);
    Dev<char> ws(wsb);
    k::sparse_sgd(k::TableRef{dt.p, e, rows, d}, di.p, dg.p, rows, dlr.p, sr ? dseed.p : nullptr, ws.p, wsb, nullptr);
    const std::vector<uint16_t> got = dt.download();
    double sum = 0;
    for (uint16_t h : got) sum += widen_host(h, e);
    const double mean = sum / double(got.size());
    if (sr) {
      // The values are 1 or 1 - 2^-8 (down with probability 0.3).
      const double p = 0.3;
      const double sigma = std::sqrt(p * (1 - p) / double(got.size())) * double(ulp);
      EXPECT_NEAR(mean, 1.0 - double(step), 5 * sigma);
    } else {
      EXPECT_EQ(mean, 1.0);
    }
  }
}

// Captured once in a CUDA graph, replayed with a new learning rate written to device memory.
TEST(CudaKernels, SparseUpdateGraphReplay) {
  REQUIRE_GPU();
  std::mt19937_64 rng(707);
  const int64_t d = 16;
  const Ids c = make_ids(Dist::kKaggle, 2048 * 26, d, rng);
  const int64_t n = int64_t(c.ids.size());
  const std::vector<int32_t> ids = as<int32_t>(c.ids);
  const std::vector<float> table0 = uniform(size_t(c.total_rows * d), -1.f, 1.f, rng);
  const std::vector<float> state0 = uniform(size_t(c.total_rows), 0.1f, 1.f, rng);
  const std::vector<float> grad = uniform(size_t(n * d), -1.f, 1.f, rng);
  const float eps = 1e-10f;

  Dev<float> dt(table0), dst(state0), dg(grad), dlr(std::vector<float>{0.f});
  Dev<int32_t> di(ids);
  const size_t wsb = k::sparse_update_workspace_bytes(n, d, c.total_rows);
  Dev<char> ws(wsb);
  cudaStream_t s = nullptr;
  ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "begin capture");
  k::sparse_adagrad(dt.p, dst.p, c.total_rows, d, di.p, dg.p, n, dlr.p, eps, ws.p, wsb, s);
  ck(cudaStreamEndCapture(s, &graph), "end capture");
  ck(cudaGraphInstantiate(&exec, graph, 0), "instantiate");

  std::vector<double> want_table(table0.begin(), table0.end()), want_state(state0.begin(), state0.end());
  const ref::Reduced red = ref::reduce_by_id(ids.data(), n, grad.data(), d);
  for (float lr : {0.5f, 0.25f}) {
    dlr.upload({lr});
    ck(cudaGraphLaunch(exec, s), "graph launch");
    ck(cudaStreamSynchronize(s), "graph run");
    ref::adagrad_update(want_table, want_state, d, red, lr, eps);
  }
  const UpdateRun got{dt.download(), dst.download()};
  expect_update_matches(table0, state0, want_table, want_state, std::set<int64_t>(red.ids.begin(), red.ids.end()),
                        c.total_rows, d, got, true);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// ---- dot interaction ----------------------------------------------------------------------------

void check_interaction(int64_t batch, int64_t d, size_t pad, std::mt19937_64& rng) {
  SCOPED_TRACE("interaction B=" + std::to_string(batch) + " d=" + std::to_string(d) + " pad=" + std::to_string(pad));
  const int64_t w = k::interaction_width(d);
  const std::vector<float> x = uniform(size_t(batch * d), -1.f, 1.f, rng);
  const std::vector<float> e = uniform(size_t(batch * 26 * d), -1.f, 1.f, rng);
  const std::vector<float> dr = uniform(size_t(batch * w), -1.f, 1.f, rng);
  std::vector<double> want_r(size_t(batch * w)), want_dx(size_t(batch * d)), want_de(size_t(batch * 26 * d));
  ref::interaction_forward(x.data(), e.data(), batch, d, want_r.data());
  ref::interaction_backward(x.data(), e.data(), dr.data(), batch, d, want_dx.data(), want_de.data());

  Dev<float> dxin(x, pad), de_in(e, pad), ddr(dr, pad);
  Dev<float> r(size_t(batch * w)), dx(size_t(batch * d), pad), de(size_t(batch * 26 * d), pad);
  r.poison();
  dx.poison();
  de.poison();
  k::interaction_forward(dxin.p, de_in.p, batch, d, r.p, nullptr);
  k::interaction_backward(dxin.p, de_in.p, ddr.p, batch, d, dx.p, de.p, nullptr);
  const std::vector<float> got_r = r.download(), got_dx = dx.download(), got_de = de.download();
  EXPECT_EQ(count_nan(got_r, got_r.size()), 0u);
  EXPECT_EQ(count_nan(got_dx, got_dx.size()), 0u);
  EXPECT_EQ(count_nan(got_de, got_de.size()), 0u);
  EXPECT_LT(ref::relative_error(got_r.data(), want_r.data(), want_r.size()), kTol);
  EXPECT_LT(ref::relative_error(got_dx.data(), want_dx.data(), want_dx.size()), kTol);
  EXPECT_LT(ref::relative_error(got_de.data(), want_de.data(), want_de.size()), kTol);
  // r[:, :d] is x itself.
  for (int64_t b = 0; b < batch; ++b)
    ASSERT_EQ(std::memcmp(&got_r[size_t(b * w)], &x[size_t(b * d)], size_t(d) * sizeof(float)), 0) << b;
  // Deterministic.
  k::interaction_forward(dxin.p, de_in.p, batch, d, r.p, nullptr);
  k::interaction_backward(dxin.p, de_in.p, ddr.p, batch, d, dx.p, de.p, nullptr);
  EXPECT_EQ(r.download(), got_r);
  EXPECT_EQ(dx.download(), got_dx);
  EXPECT_EQ(de.download(), got_de);
}

TEST(CudaKernels, Interaction) {
  REQUIRE_GPU();
  std::mt19937_64 rng(808);
  for (int64_t d : {16, 64, 128})
    for (int64_t batch : {1, 7, 4096}) check_interaction(batch, d, 0, rng);
  for (int64_t d : {1, 13, 32, 100}) check_interaction(37, d, 0, rng);  // any width; scalar when d % 4 != 0
  check_interaction(37, 16, 1, rng);                                    // misaligned rows: the scalar path
  k::interaction_forward(nullptr, nullptr, 0, 16, nullptr, nullptr);     // B = 0: nothing
}

}  // namespace

#else

TEST(CudaKernels, NotBuilt) { GTEST_SKIP() << "the trainer's CUDA kernels are not built (no nvcc)"; }

#endif
