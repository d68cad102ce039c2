// Plain CPU references for the trainer's GPU kernels (embedding.cu, interaction.cu): simple loops in
// double precision, no CUDA. Every fast kernel is tested against the function of the same name here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace sluice::train::kernels::ref {

inline constexpr int kVectors = 27;  // the bottom MLP's output and the 26 embedding rows
inline constexpr int kPairs = kVectors * (kVectors - 1) / 2;  // 351

// ---- embeddings ---------------------------------------------------------------------------------

// out[i, :] = table[ids[i], :]
template <class Id>
void gather_rows(const float* table, int64_t d, const Id* ids, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) out[i * d + c] = table[int64_t(ids[i]) * d + c];
}

// The gradients of each distinct id summed (in position order), ids ascending.
struct Reduced {
  std::vector<int64_t> ids;   // [u] ascending
  std::vector<double> sums;   // [u, d]
};

template <class Id>
Reduced reduce_by_id(const Id* ids, int64_t n, const float* grad, int64_t d) {
  std::map<int64_t, std::vector<double>> acc;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double>& a = acc[int64_t(ids[i])];
    if (a.empty()) a.assign(size_t(d), 0.0);
    for (int64_t c = 0; c < d; ++c) a[size_t(c)] += double(grad[i * d + c]);
  }
  Reduced r;
  r.ids.reserve(acc.size());
  r.sums.reserve(acc.size() * size_t(d));
  for (const auto& [id, a] : acc) {
    r.ids.push_back(id);
    r.sums.insert(r.sums.end(), a.begin(), a.end());
  }
  return r;
}

// SGD on the touched rows: w_r -= lr * g_r. `table` is [total_rows, d].
inline void sgd_update(std::vector<double>& table, int64_t d, const Reduced& g, double lr) {
  for (size_t u = 0; u < g.ids.size(); ++u)
    for (int64_t c = 0; c < d; ++c) table[size_t(g.ids[u] * d + c)] -= lr * g.sums[u * size_t(d) + size_t(c)];
}

// Row-wise Adagrad: s_r += mean_j(g_rj^2); w_r -= lr * g_r / (sqrt(s_r) + eps).
inline void adagrad_update(std::vector<double>& table, std::vector<double>& state, int64_t d, const Reduced& g,
                           double lr, double eps) {
  for (size_t u = 0; u < g.ids.size(); ++u) {
    const double* gr = &g.sums[u * size_t(d)];
    double sq = 0;
    for (int64_t c = 0; c < d; ++c) sq += gr[c] * gr[c];
    double& s = state[size_t(g.ids[u])];
    s += sq / double(d);
    const double denom = std::sqrt(s) + eps;
    for (int64_t c = 0; c < d; ++c) table[size_t(g.ids[u] * d + c)] -= lr * gr[c] / denom;
  }
}

// ---- dot interaction ----------------------------------------------------------------------------
// T = [x; e_1..e_26] per sample; r = [x, dot(T_i, T_j) for i in 1..26, j in 0..i-1 (row-major)].

// Position of the pair (i, j), i != j, in r[:, d:].
inline int pair_index(int i, int j) { return i > j ? i * (i - 1) / 2 + j : j * (j - 1) / 2 + i; }

// x [B, d], e [B, 26, d] -> r [B, d + 351]
inline void interaction_forward(const float* x, const float* e, int64_t batch, int64_t d, double* r) {
  const int64_t w = d + kPairs;
  for (int64_t b = 0; b < batch; ++b) {
    auto t = [&](int v, int64_t k) -> double {
      return v == 0 ? double(x[b * d + k]) : double(e[(b * (kVectors - 1) + (v - 1)) * d + k]);
    };
    for (int64_t k = 0; k < d; ++k) r[b * w + k] = t(0, k);
    for (int i = 1; i < kVectors; ++i)
      for (int j = 0; j < i; ++j) {
        double s = 0;
        for (int64_t k = 0; k < d; ++k) s += t(i, k) * t(j, k);
        r[b * w + d + pair_index(i, j)] = s;
      }
  }
}

// dr [B, d + 351] -> dx [B, d], de [B, 26, d]: dT_i = sum_{j != i} dr_pair(i,j) T_j; dx = dT_0 + dr[:, :d].
inline void interaction_backward(const float* x, const float* e, const float* dr, int64_t batch, int64_t d,
                                 double* dx, double* de) {
  const int64_t w = d + kPairs;
  for (int64_t b = 0; b < batch; ++b) {
    auto t = [&](int v, int64_t k) -> double {
      return v == 0 ? double(x[b * d + k]) : double(e[(b * (kVectors - 1) + (v - 1)) * d + k]);
    };
    for (int i = 0; i < kVectors; ++i)
      for (int64_t k = 0; k < d; ++k) {
        double s = 0;
        for (int j = 0; j < kVectors; ++j)
          if (j != i) s += double(dr[b * w + d + pair_index(i, j)]) * t(j, k);
        if (i == 0) dx[b * d + k] = s + double(dr[b * w + k]);
        else de[(b * (kVectors - 1) + (i - 1)) * d + k] = s;
      }
  }
}

// ---- comparison ---------------------------------------------------------------------------------

// ||got - want|| / ||want|| (0 when both are zero).
template <class G>
double relative_error(const G* got, const double* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double diff = double(got[i]) - want[i];
    num += diff * diff;
    den += want[i] * want[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

}  // namespace sluice::train::kernels::ref
