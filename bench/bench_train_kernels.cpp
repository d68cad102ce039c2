// The trainer's GPU kernels (src/trainer/cuda) at training size: one step's row gather, sparse update
// (SGD, row-wise Adagrad; launched directly and replayed from a CUDA graph) and dot interaction
// (forward + backward), on the fused Kaggle table (26 tables, the Kaggle cardinalities) with ids drawn
// log-uniformly within each table (a Zipf-like head: small tables repeat thousands of times per batch).
// Times are CUDA-event medians (and minima) over --repeat runs after warm-up. Without a GPU it says so
// and exits 0.
//
//   build/bench_train_kernels [--batch B] [--dim D] [--repeat R] [--scale F] [--int64]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/detail/check.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "trainer/cuda/embedding.hpp"
#include "trainer/cuda/interaction.hpp"

namespace kn = sluice::train::kernels;

namespace {

struct Timing {
  double median_us = 0, min_us = 0;
};

// Runs f `warmup` times, then `repeat` times between two events each; median and minimum in microseconds.
Timing time_it(const std::function<void()>& f, cudaStream_t s, int repeat, int warmup = 10) {
  for (int i = 0; i < warmup; ++i) f();
  SLUICE_CUDA(cudaStreamSynchronize(s));
  cudaEvent_t a = nullptr, b = nullptr;
  SLUICE_CUDA(cudaEventCreate(&a));
  SLUICE_CUDA(cudaEventCreate(&b));
  std::vector<double> us;
  for (int i = 0; i < repeat; ++i) {
    SLUICE_CUDA(cudaEventRecord(a, s));
    f();
    SLUICE_CUDA(cudaEventRecord(b, s));
    SLUICE_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    SLUICE_CUDA(cudaEventElapsedTime(&ms, a, b));
    us.push_back(double(ms) * 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front()};
}

template <class T>
T* dev_upload(const std::vector<T>& v) {
  T* p = nullptr;
  SLUICE_CUDA(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)));
  SLUICE_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

template <class T>
T* dev_alloc(size_t n) {
  T* p = nullptr;
  SLUICE_CUDA(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}

std::vector<float> uniform(size_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

template <class Id>
int run(int64_t batch, int64_t d, int repeat, double scale) {
  // The fused table and the ids of one batch.
  std::vector<int64_t> card(26), off(26);
  int64_t total_rows = 0;
  for (int t = 0; t < 26; ++t) {
    card[size_t(t)] = std::max<int64_t>(1, int64_t(double(sluice::kKaggleCardinalities[size_t(t)]) * scale));
    off[size_t(t)] = total_rows;
    total_rows += card[size_t(t)];
  }
  const int64_t n = batch * 26;
  std::vector<Id> ids(static_cast<size_t>(n));
  {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int64_t b = 0; b < batch; ++b)
      for (int t = 0; t < 26; ++t) {
        const int64_t c = card[size_t(t)];
        int64_t v = int64_t(std::floor(std::exp(u(rng) * std::log(double(c) + 1.0)))) - 1;
        ids[size_t(b * 26 + t)] = Id(off[size_t(t)] + std::clamp<int64_t>(v, 0, c - 1));
      }
  }
  std::printf("batch %lld, d %lld, %lld lookups, %s ids, %lld table rows (%.2f GB)\n", (long long)batch,
              (long long)d, (long long)n, sizeof(Id) == 4 ? "int32" : "int64", (long long)total_rows,
              double(total_rows) * double(d) * 4 / 1e9);

  cudaStream_t s = nullptr;
  SLUICE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* table = dev_alloc<float>(size_t(total_rows * d));
  float* state = dev_alloc<float>(size_t(total_rows));
  SLUICE_CUDA(cudaMemsetAsync(table, 0, size_t(total_rows * d) * 4, s));
  SLUICE_CUDA(cudaMemsetAsync(state, 0, size_t(total_rows) * 4, s));
  Id* d_ids = dev_upload(ids);
  float* grad = dev_upload(uniform(size_t(n * d), -1e-3f, 1e-3f, 2));
  float* rows = dev_alloc<float>(size_t(n * d));
  float* lr = dev_upload(std::vector<float>{1e-3f});
  const size_t wsb = kn::sparse_update_workspace_bytes(n, d, total_rows);
  void* ws = dev_alloc<char>(wsb);

  // Distinct ids of the batch (the reduction alone).
  int64_t* uniq = dev_alloc<int64_t>(size_t(n));
  float* sums = dev_alloc<float>(size_t(n * d));
  int64_t* count = dev_alloc<int64_t>(1);
  kn::sparse_reduce(total_rows, d, d_ids, grad, n, uniq, sums, count, ws, wsb, s);
  int64_t distinct = 0;
  SLUICE_CUDA(cudaMemcpyAsync(&distinct, count, 8, cudaMemcpyDeviceToHost, s));
  SLUICE_CUDA(cudaStreamSynchronize(s));
  std::printf("%lld distinct ids (%.1f%% of the lookups); workspace %.1f MB\n\n", (long long)distinct,
              100.0 * double(distinct) / double(n), double(wsb) / 1e6);

  // Interaction inputs.
  float* x = dev_upload(uniform(size_t(batch * d), -1.f, 1.f, 3));
  const int64_t w = kn::interaction_width(d);
  float* r = dev_alloc<float>(size_t(batch * w));
  float* dr = dev_upload(uniform(size_t(batch * w), -1.f, 1.f, 4));
  float* dx = dev_alloc<float>(size_t(batch * d));
  float* de = dev_alloc<float>(size_t(n * d));
  SLUICE_CUDA(cudaMemcpyAsync(rows, grad, size_t(n * d) * 4, cudaMemcpyDeviceToDevice, s));

  // The SGD update as a CUDA graph (captured once).
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  SLUICE_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  kn::sparse_sgd(table, total_rows, d, d_ids, grad, n, lr, ws, wsb, s);
  SLUICE_CUDA(cudaStreamEndCapture(s, &graph));
  SLUICE_CUDA(cudaGraphInstantiate(&exec, graph, 0));

  struct Row {
    const char* name;
    Timing t;
    double bytes;  // the least memory traffic: for a rate
  };
  const double row_bytes = double(d) * 4;
  std::vector<Row> table_rows = {
      {"gather", time_it([&] { kn::gather_rows(table, d, d_ids, n, rows, s); }, s, repeat),
       2.0 * double(n) * row_bytes},
      {"reduce (sort + sums)",
       time_it([&] { kn::sparse_reduce(total_rows, d, d_ids, grad, n, uniq, sums, count, ws, wsb, s); }, s, repeat),
       double(n) * row_bytes + double(distinct) * row_bytes},
      {"sgd update", time_it([&] { kn::sparse_sgd(table, total_rows, d, d_ids, grad, n, lr, ws, wsb, s); }, s, repeat),
       double(n) * row_bytes + 2.0 * double(distinct) * row_bytes},
      {"sgd update (graph)", time_it([&] { SLUICE_CUDA(cudaGraphLaunch(exec, s)); }, s, repeat),
       double(n) * row_bytes + 2.0 * double(distinct) * row_bytes},
      {"adagrad update",
       time_it([&] { kn::sparse_adagrad(table, state, total_rows, d, d_ids, grad, n, lr, 1e-10f, ws, wsb, s); }, s,
               repeat),
       double(n) * row_bytes + 2.0 * double(distinct) * (row_bytes + 4)},
      {"interaction forward", time_it([&] { kn::interaction_forward(x, rows, batch, d, r, s); }, s, repeat),
       double(batch) * (27 * row_bytes + double(w) * 4)},
      {"interaction backward",
       time_it([&] { kn::interaction_backward(x, rows, dr, batch, d, dx, de, s); }, s, repeat),
       double(batch) * (27 * row_bytes + double(w) * 4 + 27 * row_bytes)},
      {"interaction fwd + bwd",
       time_it(
           [&] {
             kn::interaction_forward(x, rows, batch, d, r, s);
             kn::interaction_backward(x, rows, dr, batch, d, dx, de, s);
           },
           s, repeat),
       double(batch) * (2 * 27 * row_bytes + 2 * double(w) * 4 + 27 * row_bytes)},
  };
  std::printf("%-24s %12s %12s %10s\n", "kernel", "median us", "min us", "GB/s");
  for (const Row& row : table_rows)
    std::printf("%-24s %12.1f %12.1f %10.0f\n", row.name, row.t.median_us, row.t.min_us,
                row.bytes / (row.t.median_us * 1e-6) / 1e9);
  std::printf("(GB/s: the least traffic each needs, over the median)\n");

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  for (void* p : {(void*)table, (void*)state, (void*)d_ids, (void*)grad, (void*)rows, (void*)lr, ws, (void*)uniq,
                  (void*)sums, (void*)count, (void*)x, (void*)r, (void*)dr, (void*)dx, (void*)de})
    cudaFree(p);
  cudaStreamDestroy(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 16384, d = 16;
  int repeat = 200;
  double scale = 1.0;
  bool int64 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--batch") batch = std::stoll(val());
    else if (a == "--dim") d = std::stoll(val());
    else if (a == "--repeat") repeat = std::max(1, std::stoi(val()));
    else if (a == "--scale") scale = std::stod(val());
    else if (a == "--int64") int64 = true;
    else {
      std::fprintf(stderr, "usage: bench_train_kernels [--batch B] [--dim D] [--repeat R] [--scale F] [--int64]\n");
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_train_kernels: no CUDA GPU, skipped\n");
    return 0;
  }
  try {
    return int64 ? run<int64_t>(batch, d, repeat, scale) : run<int32_t>(batch, d, repeat, scale);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_kernels: %s\n", e.what());
    return 1;
  }
}
