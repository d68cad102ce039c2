// GPU kernels for the fused embedding table (all tables in one [total_rows, d] tensor of float32, float16
// or bfloat16): the row gather of a step, the sparse, in-place optimiser update of the touched rows, and
// the tables' initial values. Raw device pointers and CUDA streams; plain references in reference.hpp.
//
// Half-precision tables (float16, bfloat16) are read into float32, and every sum and update is computed
// in float32; only the stored weights are half. Storing a weight rounds it either to nearest (even) or
// stochastically: up or down to the two neighbouring half values with probabilities that make the
// stored value's expectation the float32 value (FBGEMM's table-batched embeddings do the same for
// half-precision weights). Without it, updates smaller than half a unit in the last place of a weight
// vanish (bfloat16 keeps 8 bits: a weight of 0.05 ignores any update below 1.2e-4). The random bits are
// a hash of (seed, row, column) with the seed read from device memory, so a run is reproducible bit for
// bit and a captured graph replays with whatever seed the caller stored for the step.
//
// The sparse update never builds a dense gradient. The ids of a step are sorted with their positions
// (a stable radix sort over the bits that total_rows needs), the gradient rows of each distinct id are
// summed in a fixed order (runs of equal ids cut into tiles of 32 sorted entries; a tile sums its part of
// each run in position order; runs that span tiles combine their tile partials in a fixed tree), and
// each distinct row is updated once by the thread group that owns it. No float atomics: the result is
// bitwise the same on every run. Capture-safe: no host synchronisation, no allocation (the caller owns
// the workspace), the learning rate is read from device memory, and the number of distinct ids never
// leaves the device (kernels are launched for the worst case).
//
// Errors (bad arguments, a workspace too small, a failed launch) throw sluice::Error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sluice::train::kernels {

// ---- tables -------------------------------------------------------------------------------------

enum class Elem : int { kF32 = 0, kF16 = 1, kBF16 = 2 };  // a table's element type
size_t elem_bytes(Elem e);

// A table in device memory: `data` holds rows * d elements of `elem`, row-major, 16-byte aligned
// (cudaMalloc's 256 is plenty).
struct TableRef {
  void* data = nullptr;
  Elem elem = Elem::kF32;
  int64_t rows = 0;
  int64_t d = 0;
};

// Rows [first_row, first_row + rows) of table `table` of the model, written at dst (rows x d elements of
// `elem`): the values of train::init_embedding_rows (the same counter-based hash; float32 bit for bit),
// rounded to nearest for half tables.
void init_rows(void* dst, Elem elem, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d,
               float scale, cudaStream_t stream);

// Stochastic rounding of weight (row, col) under seed s uses num::rounding_bits(s, row, col) with
// num::f32_to_f16_sr / f32_to_bf16_sr (numerics.hpp: the same bits on host and device).

// ---- gather -------------------------------------------------------------------------------------

// out[i, :] = table[ids[i], :] for i < n (out is [n, d], row-major). float4 loads and stores when d % 4 == 0
// and both pointers are 16-byte aligned. ids must lie in [0, rows of table).
void gather_rows(const float* table, int64_t d, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);
void gather_rows(const float* table, int64_t d, const int64_t* ids, int64_t n, float* out, cudaStream_t stream);
// Any element type: the rows are widened to float32 (exactly).
void gather_rows(const TableRef& table, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);
void gather_rows(const TableRef& table, const int64_t* ids, int64_t n, float* out, cudaStream_t stream);

// ---- sparse update ------------------------------------------------------------------------------
//
// ids [n] index rows of the table ([total_rows, d]); grad [n, d] holds the gradient of each lookup (row i
// for ids[i]; ids may repeat any number of times). With g_r the sum of the gradient rows of id r:
//   SGD:               w_r -= lr * g_r
//   row-wise Adagrad:  s_r += mean_j(g_rj^2);  w_r -= lr * g_r / (sqrt(s_r) + eps)     (state s: [total_rows])
// Rows that no id names are left untouched (bitwise). `lr` points to ONE float in device memory, read when
// the update runs (a captured graph replays with whatever it holds then).
//
// Limits: 0 <= n < 2^31 - 64; 1 <= d <= 512 (any d; d <= 2048 when d % 4 == 0 and the pointers are
// 16-byte aligned). An id outside [0, total_rows) names no row: it is skipped (nothing is written for
// it; sparse_reduce reports it as the id total_rows).

// Bytes of device workspace the calls below need for n ids of a table of total_rows rows of width d
// (0 when n == 0; 16-byte alignment needed, cudaMalloc's 256 is plenty). Asks CUB for its sort's
// temporary storage on the current device (needs a GPU; no allocation, no launch). A workspace sized for
// the largest n, d and total_rows of a run serves every smaller call; each call checks the size it is
// given and throws when it is short. One workspace must not serve two calls that may run at the same
// time (two streams).
size_t sparse_update_workspace_bytes(int64_t n, int64_t d, int64_t total_rows);

void sparse_sgd(float* table, int64_t total_rows, int64_t d, const int32_t* ids, const float* grad, int64_t n,
                const float* lr, void* workspace, size_t workspace_bytes, cudaStream_t stream);
void sparse_sgd(float* table, int64_t total_rows, int64_t d, const int64_t* ids, const float* grad, int64_t n,
                const float* lr, void* workspace, size_t workspace_bytes, cudaStream_t stream);

void sparse_adagrad(float* table, float* state, int64_t total_rows, int64_t d, const int32_t* ids,
                    const float* grad, int64_t n, const float* lr, float eps, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);
void sparse_adagrad(float* table, float* state, int64_t total_rows, int64_t d, const int64_t* ids,
                    const float* grad, int64_t n, const float* lr, float eps, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);

// Any element type. round_seed (device memory, one uint64) selects stochastic rounding for half tables
// under the seed it holds when the update runs; null rounds to nearest. Ignored for float32 tables.
void sparse_sgd(const TableRef& table, const int32_t* ids, const float* grad, int64_t n, const float* lr,
                const uint64_t* round_seed, void* workspace, size_t workspace_bytes, cudaStream_t stream);
void sparse_sgd(const TableRef& table, const int64_t* ids, const float* grad, int64_t n, const float* lr,
                const uint64_t* round_seed, void* workspace, size_t workspace_bytes, cudaStream_t stream);
void sparse_adagrad(const TableRef& table, float* state, const int32_t* ids, const float* grad, int64_t n,
                    const float* lr, float eps, const uint64_t* round_seed, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);
void sparse_adagrad(const TableRef& table, float* state, const int64_t* ids, const float* grad, int64_t n,
                    const float* lr, float eps, const uint64_t* round_seed, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);

// The reduction alone (the same sums the updates apply): *count (device) = u, the number of distinct
// ids; unique_ids[0..u) = the distinct ids ascending; sums[k, :] (row-major [u, d]) = the sum of the
// gradient rows of unique_ids[k]. unique_ids and sums must hold n entries / rows (u <= n); entries past
// u are not written. For tests and tools; the updates do not need it.
void sparse_reduce(int64_t total_rows, int64_t d, const int32_t* ids, const float* grad, int64_t n,
                   int64_t* unique_ids, float* sums, int64_t* count, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream);
void sparse_reduce(int64_t total_rows, int64_t d, const int64_t* ids, const float* grad, int64_t n,
                   int64_t* unique_ids, float* sums, int64_t* count, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream);

}  // namespace sluice::train::kernels
