// The DLRM model and its optimisers against independent, straightforward double-precision references;
// the learning-rate schedule; the exact AUC against a brute-force pair count.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/metrics.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"

namespace st = sluice::train;

namespace {

constexpr int kT = sluice::kNumSparse;
constexpr int kD = sluice::kNumDense;

std::vector<double> to_vec(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

st::Arch small_arch(int64_t d, std::vector<int64_t> tables) {
  st::Arch a;
  a.emb_dim = d;
  a.bot_mlp = {kD, 7, d};
  a.top_mlp = {st::interaction_width(d), 6, 5, 1};
  a.table_sizes = std::move(tables);
  return a;
}

std::vector<int64_t> varied_tables() {
  std::vector<int64_t> t;
  for (int i = 0; i < kT; ++i) t.push_back(2 + (i * 7) % 11);
  return t;
}

struct Batch {
  int64_t rows = 0;
  std::vector<float> dense, labels;
  std::vector<int32_t> sparse;
};

// Rows with many duplicate ids across rows (small tables, and row 3 repeats row 0's ids).
Batch make_batch(int64_t rows, const std::vector<int64_t>& tables, uint32_t seed) {
  std::mt19937 rng(seed);
  Batch b;
  b.rows = rows;
  std::uniform_real_distribution<float> u(0.f, 3.f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < kD; ++j) b.dense.push_back(u(rng));
    for (int t = 0; t < kT; ++t) {
      if (r == 3) {
        b.sparse.push_back(b.sparse[static_cast<size_t>(t)]);
      } else {
        b.sparse.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(tables[t])));
      }
    }
    b.labels.push_back(static_cast<float>(rng() % 2));
  }
  return b;
}

struct Tensors {
  torch::Tensor dense, sparse, labels;
};
Tensors as_tensors(Batch& b) {
  return {torch::from_blob(b.dense.data(), {b.rows, kD}, torch::kFloat32),
          torch::from_blob(b.sparse.data(), {b.rows, kT}, torch::kInt32),
          torch::from_blob(b.labels.data(), {b.rows}, torch::kFloat32)};
}

// ---- an independent reference: plain loops in double precision -----------------------------------

struct RefLayer {
  int64_t in = 0, out = 0;
  std::vector<double> w, b;  // w row-major [out][in]
};

struct RefModel {
  int64_t d = 0;
  std::vector<int64_t> tables;
  std::vector<std::vector<double>> emb;  // per table, row-major [n][d]
  std::vector<RefLayer> bot, top;
};

RefModel ref_from(const st::Dlrm& m) {
  RefModel r;
  r.d = m.arch().emb_dim;
  r.tables = m.arch().table_sizes;
  const std::vector<double> all = to_vec(m.emb);
  int64_t off = 0;
  for (int64_t n : r.tables) {
    r.emb.emplace_back(all.begin() + off * r.d, all.begin() + (off + n) * r.d);
    off += n;
  }
  auto layers = [](const std::vector<torch::Tensor>& w, const std::vector<torch::Tensor>& b) {
    std::vector<RefLayer> out;
    for (size_t l = 0; l < w.size(); ++l) {
      RefLayer L;
      L.out = w[l].size(0);
      L.in = w[l].size(1);
      L.w = to_vec(w[l]);
      L.b = to_vec(b[l]);
      out.push_back(L);
    }
    return out;
  };
  r.bot = layers(m.bot_w, m.bot_b);
  r.top = layers(m.top_w, m.top_b);
  return r;
}

struct RefGrads {
  std::vector<RefLayer> bot, top;                      // gradients in w/b
  std::map<std::pair<int, int64_t>, std::vector<double>> rows;  // (table, id) -> gradient of the row
  std::vector<double> logits;
  double loss = 0;
};

// Forward through a stack of layers; keeps the pre-activations and inputs for the backward pass.
std::vector<double> mlp_fwd(const std::vector<RefLayer>& layers, std::vector<double> x, bool relu_last,
                            std::vector<std::vector<double>>& inputs, std::vector<std::vector<double>>& pre) {
  for (size_t l = 0; l < layers.size(); ++l) {
    const RefLayer& L = layers[l];
    inputs.push_back(x);
    std::vector<double> y(static_cast<size_t>(L.out));
    for (int64_t o = 0; o < L.out; ++o) {
      double s = L.b[o];
      for (int64_t i = 0; i < L.in; ++i) s += L.w[o * L.in + i] * x[i];
      y[o] = s;
    }
    pre.push_back(y);
    if (l + 1 < layers.size() || relu_last)
      for (auto& v : y) v = v > 0 ? v : 0;
    x = y;
  }
  return x;
}

// Backward: dy is dL/d(output of the stack); accumulates into g and returns dL/d(input).
std::vector<double> mlp_bwd(const std::vector<RefLayer>& layers, std::vector<RefLayer>& g, std::vector<double> dy,
                            bool relu_last, const std::vector<std::vector<double>>& inputs,
                            const std::vector<std::vector<double>>& pre) {
  for (size_t li = layers.size(); li-- > 0;) {
    const RefLayer& L = layers[li];
    if (li + 1 < layers.size() || relu_last)
      for (int64_t o = 0; o < L.out; ++o)
        if (!(pre[li][o] > 0)) dy[o] = 0;
    std::vector<double> dx(static_cast<size_t>(L.in), 0.0);
    for (int64_t o = 0; o < L.out; ++o) {
      g[li].b[o] += dy[o];
      for (int64_t i = 0; i < L.in; ++i) {
        g[li].w[o * L.in + i] += dy[o] * inputs[li][i];
        dx[i] += L.w[o * L.in + i] * dy[o];
      }
    }
    dy = dx;
  }
  return dy;
}

double ref_forward_backward(const RefModel& m, const Batch& b, RefGrads* g) {
  const int64_t d = m.d;
  if (g) {
    g->bot = m.bot;
    g->top = m.top;
    for (auto* v : {&g->bot, &g->top})
      for (auto& L : *v) {
        std::fill(L.w.begin(), L.w.end(), 0.0);
        std::fill(L.b.begin(), L.b.end(), 0.0);
      }
    g->rows.clear();
    g->logits.clear();
  }
  double loss = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    std::vector<double> dense(b.dense.begin() + r * kD, b.dense.begin() + (r + 1) * kD);
    std::vector<std::vector<double>> bin, bpre, tin, tpre;
    std::vector<double> x = mlp_fwd(m.bot, dense, true, bin, bpre);
    // The 27 vectors: the bottom output, then one embedding row per table.
    std::vector<std::vector<double>> v(1 + kT);
    v[0] = x;
    for (int t = 0; t < kT; ++t) {
      const int64_t id = b.sparse[r * kT + t];
      v[1 + t].assign(m.emb[t].begin() + id * d, m.emb[t].begin() + (id + 1) * d);
    }
    std::vector<double> feat = x;
    for (int i = 0; i < 1 + kT; ++i)
      for (int j = 0; j < i; ++j) {
        double s = 0;
        for (int64_t k = 0; k < d; ++k) s += v[i][k] * v[j][k];
        feat.push_back(s);
      }
    const double z = mlp_fwd(m.top, feat, false, tin, tpre)[0];
    const double p = 1.0 / (1.0 + std::exp(-z));
    const double y = b.labels[r];
    loss += -(y * std::log(p) + (1 - y) * std::log(1 - p));
    if (!g) continue;
    g->logits.push_back(z);
    // d(mean BCE)/dz = (p - y) / B
    std::vector<double> dfeat = mlp_bwd(m.top, g->top, {(p - y) / static_cast<double>(b.rows)}, false, tin, tpre);
    std::vector<std::vector<double>> dv(1 + kT, std::vector<double>(static_cast<size_t>(d), 0.0));
    for (int64_t k = 0; k < d; ++k) dv[0][k] += dfeat[k];
    size_t pidx = static_cast<size_t>(d);
    for (int i = 0; i < 1 + kT; ++i)
      for (int j = 0; j < i; ++j, ++pidx)
        for (int64_t k = 0; k < d; ++k) {
          dv[i][k] += dfeat[pidx] * v[j][k];
          dv[j][k] += dfeat[pidx] * v[i][k];
        }
    mlp_bwd(m.bot, g->bot, dv[0], true, bin, bpre);
    for (int t = 0; t < kT; ++t) {
      auto& acc = g->rows[{t, b.sparse[r * kT + t]}];
      acc.resize(static_cast<size_t>(d), 0.0);
      for (int64_t k = 0; k < d; ++k) acc[k] += dv[1 + t][k];
    }
  }
  loss /= static_cast<double>(b.rows);
  if (g) g->loss = loss;
  return loss;
}

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << what << " [" << i << "]";
}

}  // namespace

// ---- forward, loss and every gradient ------------------------------------------------------------

TEST(DlrmModel, ForwardLossAndAllGradientsMatchDoubleReference) {
  torch::set_num_threads(1);
  const auto tables = varied_tables();
  st::Dlrm model(small_arch(4, tables), 7, torch::kCPU);
  // Larger embedding rows than the initialisation gives, so the interaction terms carry weight.
  {
    torch::NoGradGuard ng;
    model.emb.mul_(4.0);
  }
  Batch b = make_batch(6, tables, 11);
  Tensors t = as_tensors(b);
  const RefModel ref = ref_from(model);
  RefGrads g;
  ref_forward_backward(ref, b, &g);

  torch::Tensor flat = model.flat_ids(t.sparse);
  torch::Tensor rows = model.gather(flat);
  rows.requires_grad_(true);
  torch::Tensor logits = model.forward(t.dense, rows);
  torch::Tensor loss = at::binary_cross_entropy_with_logits(logits, t.labels);
  loss.backward();

  // Forward output (the sigmoid) and the loss.
  expect_close(to_vec(logits), g.logits, 1e-5, "logits");
  std::vector<double> ref_p;
  for (double z : g.logits) ref_p.push_back(1 / (1 + std::exp(-z)));
  expect_close(to_vec(torch::sigmoid(logits)), ref_p, 1e-5, "probabilities");
  EXPECT_NEAR(loss.item<double>(), g.loss, 1e-5);
  // The checks below must be able to fail: make sure the gradients are not trivially zero.
  double gnorm = 0;
  for (double v : g.bot[0].w) gnorm += std::fabs(v);
  EXPECT_GT(gnorm, 1e-4);

  for (size_t l = 0; l < model.bot_w.size(); ++l) {
    expect_close(to_vec(model.bot_w[l].grad()), g.bot[l].w, 1e-5, "bottom W" + std::to_string(l));
    expect_close(to_vec(model.bot_b[l].grad()), g.bot[l].b, 1e-5, "bottom b" + std::to_string(l));
  }
  for (size_t l = 0; l < model.top_w.size(); ++l) {
    expect_close(to_vec(model.top_w[l].grad()), g.top[l].w, 1e-5, "top W" + std::to_string(l));
    expect_close(to_vec(model.top_b[l].grad()), g.top[l].b, 1e-5, "top b" + std::to_string(l));
  }
  // Embedding rows: the per-lookup gradients summed per touched row.
  const std::vector<double> rg = to_vec(rows.grad());
  std::map<std::pair<int, int64_t>, std::vector<double>> got;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int tt = 0; tt < kT; ++tt) {
      auto& acc = got[{tt, b.sparse[r * kT + tt]}];
      acc.resize(4, 0.0);
      for (int k = 0; k < 4; ++k) acc[k] += rg[(r * kT + tt) * 4 + k];
    }
  ASSERT_EQ(got.size(), g.rows.size());
  for (auto& [key, v] : g.rows) expect_close(got[key], v, 1e-5, "embedding row");
}

TEST(DlrmModel, ReferenceBackpropAgreesWithFiniteDifferences) {
  // Checks the test's own reference: central differences of its double forward.
  const auto tables = varied_tables();
  st::Dlrm model(small_arch(3, tables), 5, torch::kCPU);
  Batch b = make_batch(4, tables, 3);
  RefModel ref = ref_from(model);
  for (auto& tbl : ref.emb)
    for (auto& v : tbl) v *= 4;
  RefGrads g;
  ref_forward_backward(ref, b, &g);
  const double h = 1e-6;
  auto fd = [&](double& param) {
    const double keep = param;
    param = keep + h;
    const double up = ref_forward_backward(ref, b, nullptr);
    param = keep - h;
    const double down = ref_forward_backward(ref, b, nullptr);
    param = keep;
    return (up - down) / (2 * h);
  };
  for (size_t l = 0; l < ref.bot.size(); ++l)
    for (size_t i = 0; i < ref.bot[l].w.size(); i += 5) EXPECT_NEAR(fd(ref.bot[l].w[i]), g.bot[l].w[i], 1e-7);
  for (size_t l = 0; l < ref.top.size(); ++l) {
    for (size_t i = 0; i < ref.top[l].w.size(); i += 37) EXPECT_NEAR(fd(ref.top[l].w[i]), g.top[l].w[i], 1e-7);
    for (size_t i = 0; i < ref.top[l].b.size(); ++i) EXPECT_NEAR(fd(ref.top[l].b[i]), g.top[l].b[i], 1e-7);
  }
  for (auto& [key, grad] : g.rows)
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(fd(ref.emb[key.first][key.second * 3 + k]), grad[k], 1e-7);
}

TEST(DlrmModel, InitialisationFollowsMetaAndIsSeeded) {
  std::vector<int64_t> tables(kT, 4000);
  tables[0] = 100;
  st::Arch arch = small_arch(16, tables);
  arch.bot_mlp = {kD, 512, 16};
  arch.emb_init_scale = -1;  // Meta's sqrt(1 / rows) per table
  st::Dlrm a(arch, 42, torch::kCPU), b(arch, 42, torch::kCPU), c(arch, 43, torch::kCPU);
  EXPECT_TRUE(torch::equal(a.emb, b.emb));
  EXPECT_TRUE(torch::equal(a.bot_w[0], b.bot_w[0]));
  EXPECT_FALSE(torch::equal(a.emb, c.emb));
  EXPECT_FALSE(torch::equal(a.top_w[0], c.top_w[0]));
  // Table 0 (100 rows): U(-0.1, 0.1); table 1 (4000 rows): U(-1/sqrt(4000), ..).
  const auto t0 = a.emb.narrow(0, 0, 100), t1 = a.emb.narrow(0, 100, 4000);
  EXPECT_LE(t0.abs().max().item<double>(), 0.1);
  EXPECT_GT(t0.abs().max().item<double>(), 0.09);
  EXPECT_LE(t1.abs().max().item<double>(), std::sqrt(1.0 / 4000));
  EXPECT_NEAR(t1.std().item<double>(), std::sqrt(1.0 / 4000) / std::sqrt(3.0), 2e-4);
  // Bottom layer 0: W [512, 13] ~ N(0, sqrt(2/525)); b ~ N(0, sqrt(1/512)).
  EXPECT_NEAR(a.bot_w[0].std().item<double>(), std::sqrt(2.0 / 525), 0.004);
  EXPECT_NEAR(a.bot_b[0].std().item<double>(), std::sqrt(1.0 / 512), 0.006);
  EXPECT_NEAR(a.bot_w[0].mean().item<double>(), 0.0, 0.004);
}

// The default: U(-0.01, 0.01) for every table, and a row's first values depend only on the seed, the
// table and the row: not on the table's size (online ids size tables by a capacity, prepared data by
// its vocabulary), nor on the device.
TEST(DlrmModel, InitialRowsDoNotDependOnTheTableSize) {
  std::vector<int64_t> small(kT, 300), large(kT, 300);
  large[5] = 50000;
  large[0] = 7000;
  st::Arch a_small = small_arch(8, small), a_large = small_arch(8, large);
  EXPECT_EQ(a_small.emb_init_scale, 0.01);
  st::Dlrm s(a_small, 9, torch::kCPU), l(a_large, 9, torch::kCPU);
  for (int t = 0; t < kT; ++t) {
    const auto rows_s = s.emb.narrow(0, s.table_offsets()[t], 300);
    const auto rows_l = l.emb.narrow(0, l.table_offsets()[t], 300);
    EXPECT_TRUE(torch::equal(rows_s, rows_l)) << "table " << t;
  }
  EXPECT_LE(l.emb.abs().max().item<double>(), 0.01);
  EXPECT_GT(l.emb.abs().max().item<double>(), 0.0099);
  EXPECT_NEAR(l.emb.std().item<double>(), 0.01 / std::sqrt(3.0), 2e-4);
  // Tables differ from each other, and the seed matters.
  EXPECT_FALSE(torch::equal(s.emb.narrow(0, 0, 300), s.emb.narrow(0, 300, 300)));
  st::Dlrm other(a_small, 10, torch::kCPU);
  EXPECT_FALSE(torch::equal(s.emb, other.emb));
  if (torch::cuda::is_available()) {
    st::Dlrm g(a_small, 9, torch::Device(torch::kCUDA, 0));
    EXPECT_TRUE(torch::equal(g.emb.to(torch::kCPU), s.emb));
    EXPECT_TRUE(torch::equal(g.top_w[0].to(torch::kCPU), s.top_w[0]));
  }
}

TEST(DlrmModel, Bf16ForwardStaysCloseToFp32) {
  const auto tables = varied_tables();
  st::Dlrm f32(small_arch(8, tables), 9, torch::kCPU, st::Precision::kFp32);
  st::Dlrm bf(small_arch(8, tables), 9, torch::kCPU, st::Precision::kBf16);
  Batch b = make_batch(16, tables, 5);
  Tensors t = as_tensors(b);
  torch::NoGradGuard ng;
  auto a = f32.forward(t.dense, f32.gather(f32.flat_ids(t.sparse)));
  auto c = bf.forward(t.dense, bf.gather(bf.flat_ids(t.sparse)));
  EXPECT_EQ(c.scalar_type(), torch::kFloat32);
  EXPECT_LT((a - c).abs().max().item<double>(), 0.05);
}

TEST(DlrmModel, PresetsAndOverrides) {
  auto k = st::preset_arch("kaggle");
  EXPECT_EQ(k.bot_mlp, (std::vector<int64_t>{13, 512, 256, 64, 16}));
  EXPECT_EQ(k.top_mlp, (std::vector<int64_t>{367, 512, 256, 1}));
  auto t = st::preset_arch("terabyte");
  EXPECT_EQ(t.top_mlp, (std::vector<int64_t>{415, 512, 512, 256, 1}));
  auto m = st::preset_arch("mlperf");
  EXPECT_EQ(m.bot_mlp, (std::vector<int64_t>{13, 512, 256, 128}));
  EXPECT_EQ(m.top_mlp, (std::vector<int64_t>{479, 1024, 1024, 512, 256, 1}));
  st::apply_arch_overrides(k, 32, "", "256-1");
  EXPECT_EQ(k.bot_mlp.back(), 32);
  EXPECT_EQ(k.top_mlp, (std::vector<int64_t>{383, 256, 1}));
  st::apply_arch_overrides(k, 0, "13-64-32", "383-128-1");
  EXPECT_EQ(k.top_mlp, (std::vector<int64_t>{383, 128, 1}));
  k.table_sizes.assign(kT, 10);
  EXPECT_NO_THROW(st::validate_arch(k));
  k.bot_mlp = {13, 64, 16};
  EXPECT_THROW(st::validate_arch(k), sluice::Error);
  EXPECT_THROW(st::preset_arch("huge"), sluice::Error);
  EXPECT_THROW(st::parse_mlp("13--5"), sluice::Error);
  EXPECT_EQ(st::parse_table_sizes("kaggle", 1000)[2], 1000);
  EXPECT_EQ(st::parse_table_sizes("kaggle")[0], 1460);
  EXPECT_EQ(st::parse_table_sizes("77").size(), static_cast<size_t>(kT));
  EXPECT_THROW(st::parse_table_sizes("1,2,3"), sluice::Error);
}

// ---- optimisers -----------------------------------------------------------------------------------

namespace {

// A dense reference step: the whole table is a leaf with a dense gradient.
struct DenseGrads {
  torch::Tensor emb;                 // [total_rows, d]
  std::vector<torch::Tensor> mlp;    // like mlp_params()
};

DenseGrads dense_grads(const st::Dlrm& m, const Tensors& t) {
  torch::Tensor emb = m.emb.detach().clone().requires_grad_(true);
  std::vector<torch::Tensor> params;
  for (auto& p : m.mlp_params()) params.push_back(p.detach().clone().requires_grad_(true));
  // Rebuild the forward with these leaves: a copy of the model sharing nothing.
  st::Dlrm copy(m.arch(), 0, torch::kCPU);
  {
    torch::NoGradGuard ng;
    size_t i = 0;
    for (size_t l = 0; l < copy.bot_w.size(); ++l) {
      copy.bot_w[l] = params[i++];
      copy.bot_b[l] = params[i++];
    }
    for (size_t l = 0; l < copy.top_w.size(); ++l) {
      copy.top_w[l] = params[i++];
      copy.top_b[l] = params[i++];
    }
  }
  torch::Tensor flat = m.flat_ids(t.sparse).to(torch::kInt64);
  torch::Tensor rows = emb.index_select(0, flat).view({t.dense.size(0), kT, m.arch().emb_dim});
  torch::Tensor loss = at::binary_cross_entropy_with_logits(copy.forward(t.dense, rows), t.labels);
  loss.backward();
  DenseGrads g;
  g.emb = emb.grad().clone();
  for (auto& p : params) g.mlp.push_back(p.grad().clone());
  return g;
}

}  // namespace

TEST(DlrmOptimizer, SparseSgdEqualsDenseUpdateWithDuplicates) {
  torch::set_num_threads(1);
  const auto tables = varied_tables();
  st::Dlrm model(small_arch(4, tables), 3, torch::kCPU);
  st::Optimizer opt(st::OptimizerKind::kSgd, model);
  Batch b = make_batch(8, tables, 21);
  Tensors t = as_tensors(b);
  const double lr = 0.7;

  DenseGrads g = dense_grads(model, t);
  const torch::Tensor expect_emb = model.emb - lr * g.emb;
  std::vector<torch::Tensor> expect_mlp;
  auto params = model.mlp_params();
  for (size_t i = 0; i < params.size(); ++i) expect_mlp.push_back(params[i].detach() - lr * g.mlp[i]);
  const torch::Tensor before = model.emb.clone();

  st::train_step(model, opt, t.dense, model.flat_ids(t.sparse), t.labels, lr);

  // Duplicates really occurred (row 3 repeats row 0) and the update is not trivial.
  EXPECT_GT((g.emb.abs().sum(1) > 0).sum().item<int64_t>(), 0);
  EXPECT_LT((model.emb - expect_emb).abs().max().item<double>(), 1e-6);
  EXPECT_GT((model.emb - before).abs().max().item<double>(), 1e-4);
  // Untouched rows are bit-for-bit unchanged.
  const torch::Tensor untouched = g.emb.abs().sum(1) == 0;
  EXPECT_TRUE(torch::equal(model.emb.index({untouched}), before.index({untouched})));
  params = model.mlp_params();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_LT((params[i].detach() - expect_mlp[i]).abs().max().item<double>(), 1e-6) << "param " << i;
    EXPECT_FALSE(params[i].grad().defined()) << "gradients are cleared after the step";
  }
}

TEST(DlrmOptimizer, AdagradMatchesReferenceOverSteps) {
  torch::set_num_threads(1);
  const auto tables = varied_tables();
  st::Dlrm model(small_arch(4, tables), 4, torch::kCPU);
  st::Optimizer opt(st::OptimizerKind::kAdagrad, model);
  const double lr = 0.05, eps = st::Optimizer::kAdagradEps;

  // References: torch.optim.Adagrad for the MLPs, row-wise Adagrad written densely for the table.
  std::vector<torch::Tensor> ref_params;
  for (auto& p : model.mlp_params()) ref_params.push_back(p.detach().clone().requires_grad_(true));
  torch::optim::Adagrad ref_opt(ref_params, torch::optim::AdagradOptions(lr).eps(eps));
  torch::Tensor ref_emb = model.emb.clone();
  torch::Tensor ref_state = torch::zeros({ref_emb.size(0)});

  for (uint32_t step = 0; step < 3; ++step) {
    Batch b = make_batch(8, tables, 100 + step);
    Tensors t = as_tensors(b);
    DenseGrads g = dense_grads(model, t);
    // MLP reference
    ref_opt.zero_grad();
    for (size_t i = 0; i < ref_params.size(); ++i) ref_params[i].mutable_grad() = g.mlp[i].clone();
    ref_opt.step();
    // Row-wise table reference (untouched rows: zero gradient, nothing changes)
    ref_state += g.emb.pow(2).mean(1);
    ref_emb -= lr * g.emb / (ref_state.sqrt() + eps).unsqueeze(1);

    st::train_step(model, opt, t.dense, model.flat_ids(t.sparse), t.labels, lr);

    EXPECT_LT((model.emb - ref_emb).abs().max().item<double>(), 1e-6) << "step " << step;
    EXPECT_LT((opt.emb_state - ref_state).abs().max().item<double>(), 1e-6) << "step " << step;
    auto params = model.mlp_params();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_LT((params[i].detach() - ref_params[i].detach()).abs().max().item<double>(), 1e-6)
          << "step " << step << " param " << i;
  }
}

// ---- learning-rate schedule -------------------------------------------------------------------

namespace {
// A replica of Meta's LRPolicyScheduler as PyTorch drives it: the constructor's initial step() sets the
// rate for the first optimiser step with _step_count = 1; every later scheduler.step() increments it.
struct MetaScheduler {
  st::LrSchedule s;
  int64_t count = 0;
  double last_lr = 0;
  bool has_last = false;
  double lr = 0;
  explicit MetaScheduler(st::LrSchedule sc) : s(sc) { step(); }
  void step() {
    ++count;
    const double base = s.base_lr;
    const int64_t end = s.decay_start_step + s.num_decay_steps;
    if (count < s.num_warmup_steps) {
      lr = base * (1.0 - static_cast<double>(s.num_warmup_steps - count) / s.num_warmup_steps);
      last_lr = lr;
      has_last = true;
    } else if (s.decay_start_step <= count && count < end) {
      const double scale =
          std::pow(static_cast<double>(s.num_decay_steps - (count - s.decay_start_step)) / s.num_decay_steps, 2);
      lr = std::max(1e-7, base * scale);
      last_lr = lr;
      has_last = true;
    } else if (s.num_decay_steps > 0) {
      lr = has_last ? last_lr : base;
    } else {
      lr = base;
    }
  }
};
}  // namespace

TEST(LrSchedule, ValuesAtChosenSteps) {
  st::LrSchedule s{1.0, 10, 20, 10};
  EXPECT_DOUBLE_EQ(st::lr_at(s, 0), 0.1);   // first step: 1/10 of the rate
  EXPECT_DOUBLE_EQ(st::lr_at(s, 4), 0.5);
  EXPECT_DOUBLE_EQ(st::lr_at(s, 8), 0.9);
  EXPECT_DOUBLE_EQ(st::lr_at(s, 12), 0.9);  // between warm-up and decay: frozen at the last warm-up value
  EXPECT_DOUBLE_EQ(st::lr_at(s, 19), 1.0);  // decay starts at the full rate
  EXPECT_DOUBLE_EQ(st::lr_at(s, 24), 0.25);
  EXPECT_DOUBLE_EQ(st::lr_at(s, 28), 0.01);
  EXPECT_DOUBLE_EQ(st::lr_at(s, 500), 0.01);
  EXPECT_DOUBLE_EQ(st::lr_at({0.1, 0, 0, 0}, 12345), 0.1);
  EXPECT_DOUBLE_EQ(st::lr_at({1e-6, 0, 0, 10}, 9), 1e-7);  // floored at Meta's minimum
  EXPECT_THROW(st::validate_schedule({0.1, 100, 50, 10}), sluice::Error);
  EXPECT_NO_THROW(st::validate_schedule({0.1, 100, 0, 0}));

  for (st::LrSchedule sc : {st::LrSchedule{0.3, 7, 15, 12}, st::LrSchedule{2.0, 0, 5, 9},
                            st::LrSchedule{1.0, 4, 4, 3}, st::LrSchedule{0.5, 6, 0, 0}}) {
    MetaScheduler meta(sc);
    for (int64_t done = 0; done < 60; ++done) {
      EXPECT_DOUBLE_EQ(st::lr_at(sc, done), meta.lr) << "steps done " << done;
      meta.step();
    }
  }
}

// ---- AUC ----------------------------------------------------------------------------------------

namespace {
double brute_auc(const std::vector<float>& s, const std::vector<float>& y) {
  double num = 0, pos = 0, neg = 0;
  for (size_t i = 0; i < s.size(); ++i) (y[i] > 0.5f ? pos : neg) += 1;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (y[i] > 0.5f && y[j] < 0.5f) num += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
  return num / (pos * neg);
}
}  // namespace

TEST(Metrics, ExactAucMatchesBruteForceWithTies) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t n = 50 + rng() % 700;
    const int levels = trial % 2 ? 7 : 100000;  // heavy ties in half of the trials
    std::vector<float> s(n), y(n);
    for (size_t i = 0; i < n; ++i) {
      s[i] = static_cast<float>(rng() % levels) / levels;
      y[i] = static_cast<float>((rng() % 100) < 20 + 50 * s[i] ? 1 : 0);
    }
    EXPECT_NEAR(st::exact_auc(s.data(), y.data(), n), brute_auc(s, y), 1e-12) << "trial " << trial;
  }
  std::vector<float> s = {0.1f, 0.2f, 0.3f, 0.4f}, y = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(st::exact_auc(s.data(), y.data(), 4), 1.0);
  y = {1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(st::exact_auc(s.data(), y.data(), 4), 0.0);
  s = {0.5f, 0.5f, 0.5f, 0.5f};
  EXPECT_DOUBLE_EQ(st::exact_auc(s.data(), y.data(), 4), 0.5);
  y = {1, 1, 1, 1};
  EXPECT_TRUE(std::isnan(st::exact_auc(s.data(), y.data(), 4)));
}

TEST(Metrics, LoglossAndAccuracyFromLogits) {
  std::vector<float> z = {-2.f, 0.f, 3.f, 1.f, -40.f, 40.f}, y = {0, 1, 1, 0, 0, 1};
  const auto m = st::metrics_from_logits(z.data(), y.data(), z.size());
  double ll = 0;
  int correct = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double p = 1 / (1 + std::exp(-static_cast<double>(z[i])));
    ll += y[i] > 0.5f ? -std::log(p) : -std::log1p(-p);
    correct += (p > 0.5) == (y[i] > 0.5);
  }
  EXPECT_NEAR(m.logloss, ll / 6, 1e-12);
  EXPECT_DOUBLE_EQ(m.accuracy, correct / 6.0);
  EXPECT_EQ(m.rows, 6);
}
