// The embedding kernels of embedding.hpp: the row gather and the deterministic sparse update.
//
// Sparse update, on one stream, with no host synchronisation:
//   1. prepare  keys[i] = ids[i] (an id outside [0, total_rows) becomes total_rows, which sorts last and
//               is never applied), pos[i] = i;
//   2. sort     cub::DeviceRadixSort::SortPairs (key, pos) over bit_width(total_rows) bits: stable, so
//               the positions of one id stay ascending;
//   3. tiles    one warp per tile of 32 sorted entries. The tile's runs of equal keys ("segments") are
//               dealt to groups of lanes (a group holds one row of d floats; the groups of a warp run side
//               by side), each summed in position order; a tile that is all one segment is summed by every
//               group (strided shares, then a fixed butterfly). A run that lies wholly inside the tile is
//               applied there. The tile's first segment, when its run began in an earlier tile, is stored
//               as the tile's left partial; its last segment, when its run begins in this tile and goes on
//               into the next one, as its right partial.
//   4. spans    a run that crosses tiles t0..t1 is applied by the warp of t0 (its "span head"):
//               right partial of t0 + left partials of t0+1..t1 (contiguous), summed by strided groups and
//               combined in a fixed tree; long spans by the whole block.
// Every sum has an order fixed by the sorted keys alone (no atomics): the result is the same, bit for bit,
// on every run. Reduce mode writes the sums with their ids instead of updating (ranks of the runs from an
// exclusive scan of the run heads).
#include "trainer/cuda/embedding.hpp"

#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cstdint>
#include <string>

#include "engine/cuda/detail/check.hpp"
#include "trainer/cuda/numerics.hpp"
#include "trainer/cuda/vec.cuh"
#include "sluice/source.hpp"

namespace sluice::train::kernels {

namespace {

constexpr int kTile = 32;                        // sorted entries per tile: one warp
constexpr int kWarps = 8;                        // warps (tiles) per block
constexpr int kBlock = kTile * kWarps;           // 256 threads
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kMaxIds = int64_t(INT32_MAX) - 64;  // positions are int32
constexpr size_t kAlign = 256;

enum Mode : int { kSgd = 0, kAdagrad = 1, kReduce = 2 };

// ---- small vector helpers (float or float4) -------------------------------------------------------

using detail::VecOf;

__device__ __forceinline__ void vzero(float& a) { a = 0.f; }
__device__ __forceinline__ void vzero(float4& a) { a = make_float4(0.f, 0.f, 0.f, 0.f); }
__device__ __forceinline__ void vadd(float& a, float b) { a += b; }
__device__ __forceinline__ void vadd(float4& a, const float4& b) {
  a.x += b.x;
  a.y += b.y;
  a.z += b.z;
  a.w += b.w;
}
__device__ __forceinline__ float vsumsq(float a) { return a * a; }
__device__ __forceinline__ float vsumsq(const float4& a) { return a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w; }
__device__ __forceinline__ float shfl_xor(unsigned mask, float v, int o) { return __shfl_xor_sync(mask, v, o); }
__device__ __forceinline__ float4 shfl_xor(unsigned mask, float4 v, int o) {
  return make_float4(__shfl_xor_sync(mask, v.x, o), __shfl_xor_sync(mask, v.y, o), __shfl_xor_sync(mask, v.z, o),
                     __shfl_xor_sync(mask, v.w, o));
}
// w - lr * g  and  w - lr * (g / denom), per component
__device__ __forceinline__ float sgd(float w, float g, float lr) { return w - lr * g; }
__device__ __forceinline__ float4 sgd(float4 w, const float4& g, float lr) {
  return make_float4(w.x - lr * g.x, w.y - lr * g.y, w.z - lr * g.z, w.w - lr * g.w);
}
__device__ __forceinline__ float adagrad(float w, float g, float lr, float denom) { return w - lr * (g / denom); }
__device__ __forceinline__ float4 adagrad(float4 w, const float4& g, float lr, float denom) {
  return make_float4(w.x - lr * (g.x / denom), w.y - lr * (g.y / denom), w.z - lr * (g.z / denom),
                     w.w - lr * (g.w / denom));
}

// ---- gather -------------------------------------------------------------------------------------

// ---- table elements ------------------------------------------------------------------------------

constexpr int kF32 = int(Elem::kF32), kF16 = int(Elem::kF16), kBF16 = int(Elem::kBF16);

__device__ __forceinline__ float widen(uint32_t h, int elem) {
  return elem == kF16 ? num::f16_to_f32(uint16_t(h)) : num::bf16_to_f32(uint16_t(h));
}
// A float32 value stored into a half table: stochastically with bits r when sr, else to nearest.
__device__ __forceinline__ uint32_t narrow(float v, int elem, bool sr, uint32_t r) {
  if (elem == kF16) return sr ? num::f32_to_f16_sr(v, r) : num::f32_to_f16_rn(v);
  return sr ? num::f32_to_bf16_sr(v, r) : num::f32_to_bf16_rn(v);
}

// Vector c of the row that starts at element `base` (float: element c; float4: elements 4c..4c+3).
template <int ELEM>
__device__ __forceinline__ void load_elems(const void* table, int64_t base, int c, float& out) {
  if constexpr (ELEM == kF32) out = __ldg(static_cast<const float*>(table) + base + c);
  else out = widen(__ldg(static_cast<const unsigned short*>(table) + base + c), ELEM);
}
template <int ELEM>
__device__ __forceinline__ void load_elems(const void* table, int64_t base, int c, float4& out) {
  if constexpr (ELEM == kF32) {
    out = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(table) + base) + c);
  } else {
    const uint2 raw = __ldg(reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(table) + base) + c);
    out = make_float4(widen(raw.x & 0xFFFFu, ELEM), widen(raw.x >> 16, ELEM), widen(raw.y & 0xFFFFu, ELEM),
                      widen(raw.y >> 16, ELEM));
  }
}

// ---- gather -------------------------------------------------------------------------------------

// Groups of 2^lr_log2 lanes copy one row each (lane c, c + L, ... of the row's `cols` vectors).
template <class Id, int VEC, int ELEM>
__global__ void __launch_bounds__(256) gather_kernel(const void* __restrict__ table, int64_t d,
                                                     const Id* __restrict__ ids, int64_t n, float* __restrict__ out,
                                                     int cols, int lr_log2) {
  using V = typename VecOf<VEC>::T;
  const int L = 1 << lr_log2;
  const int lg = int(threadIdx.x) & (L - 1);
  const int64_t rows_per_block = int64_t(blockDim.x) >> lr_log2;
  const int64_t stride = int64_t(gridDim.x) * rows_per_block;
  for (int64_t row = int64_t(blockIdx.x) * rows_per_block + (threadIdx.x >> lr_log2); row < n; row += stride) {
    const int64_t base = int64_t(ids[row]) * d;
    V* dst = reinterpret_cast<V*>(out + row * d);
    for (int c = lg; c < cols; c += L) {
      V v;
      load_elems<ELEM>(table, base, c, v);
      dst[c] = v;
    }
  }
}

// ---- initial values -----------------------------------------------------------------------------

template <int ELEM>
__global__ void init_kernel(void* __restrict__ dst, uint64_t table_key, int64_t first_row, int64_t rows, int64_t d,
                            float scale) {
  const int64_t total = rows * d;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / d, j = i - r * d;
    const float v = num::init_value(num::init_row_key(table_key, first_row + r), j, scale);
    if constexpr (ELEM == kF32) static_cast<float*>(dst)[i] = v;
    else static_cast<unsigned short*>(dst)[i] = (unsigned short)(narrow(v, ELEM, false, 0));
  }
}

// ---- sparse update: kernels ---------------------------------------------------------------------

struct Params {
  void* table;         // [total_rows, d] of `elem` (update modes)
  int elem;            // Elem
  const uint64_t* round_seed;  // half tables: stochastic rounding under *round_seed; null: to nearest
  float* state;        // [total_rows] (Adagrad)
  const float* lr;     // one float, device memory
  float eps;
  uint64_t total_rows;
  int64_t d;
  int mode;
  const int32_t* ranks;  // reduce: rank of each run by its first sorted entry
  int64_t* out_ids;      // reduce: [u]
  float* out_sums;       // reduce: [u, d]
};

template <class Id, class Key>
__global__ void prepare_kernel(const Id* __restrict__ ids, int64_t n, uint64_t total_rows, Key* __restrict__ keys,
                               int32_t* __restrict__ pos) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const Id id = ids[i];
    // Negative ids and ids >= total_rows become total_rows: sorted after every valid id, never applied.
    keys[i] = (id < 0 || uint64_t(id) >= total_rows) ? Key(total_rows) : Key(id);
    pos[i] = int32_t(i);
  }
}

template <class Key>
__global__ void head_flags_kernel(const Key* __restrict__ keys, int64_t n, int32_t* __restrict__ flags) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    flags[i] = (i == 0 || keys[i] != keys[i - 1]) ? 1 : 0;
}

__global__ void count_kernel(const int32_t* __restrict__ flags, const int32_t* __restrict__ ranks, int64_t n,
                             int64_t* __restrict__ count) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *count = int64_t(ranks[n - 1]) + flags[n - 1];
}

// The weights of an update: vector c of the row at element `base`, read and written in the table's
// element type (plain loads: the kernel writes the table). Half tables store with narrow().
template <class V>
__device__ __forceinline__ V load_w(const Params& p, int64_t base, int c);
template <>
__device__ __forceinline__ float load_w<float>(const Params& p, int64_t base, int c) {
  if (p.elem == kF32) return static_cast<const float*>(p.table)[base + c];
  return widen(static_cast<const unsigned short*>(p.table)[base + c], p.elem);
}
template <>
__device__ __forceinline__ float4 load_w<float4>(const Params& p, int64_t base, int c) {
  if (p.elem == kF32) return reinterpret_cast<const float4*>(static_cast<const float*>(p.table) + base)[c];
  const uint2 raw = reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(p.table) + base)[c];
  return make_float4(widen(raw.x & 0xFFFFu, p.elem), widen(raw.x >> 16, p.elem), widen(raw.y & 0xFFFFu, p.elem),
                     widen(raw.y >> 16, p.elem));
}
__device__ __forceinline__ void store_w(const Params& p, int64_t base, uint64_t key, int c, float v, bool sr,
                                        uint64_t seed) {
  if (p.elem == kF32) {
    static_cast<float*>(p.table)[base + c] = v;
    return;
  }
  const uint32_t r = sr ? num::rounding_bits(seed, key, uint32_t(c)) : 0u;
  static_cast<unsigned short*>(p.table)[base + c] = (unsigned short)(narrow(v, p.elem, sr, r));
}
__device__ __forceinline__ void store_w(const Params& p, int64_t base, uint64_t key, int c, const float4& v, bool sr,
                                        uint64_t seed) {
  if (p.elem == kF32) {
    reinterpret_cast<float4*>(static_cast<float*>(p.table) + base)[c] = v;
    return;
  }
  const uint32_t col = uint32_t(c) * 4u;
  auto bits = [&](uint32_t k) { return sr ? num::rounding_bits(seed, key, col + k) : 0u; };
  uint2 raw;
  raw.x = narrow(v.x, p.elem, sr, bits(0)) | (narrow(v.y, p.elem, sr, bits(1)) << 16);
  raw.y = narrow(v.z, p.elem, sr, bits(2)) | (narrow(v.w, p.elem, sr, bits(3)) << 16);
  reinterpret_cast<uint2*>(static_cast<unsigned short*>(p.table) + base)[c] = raw;
}

// Applies (or, in reduce mode, writes out) the summed gradient `acc` of the run of id `key` that starts at
// sorted entry `run_start`. Called by one group of 2^lr_log2 lanes (lane lg of the group holds vectors
// lg, lg + L, ... of the row); `gmask` names the group's lanes.
template <class V, int J>
__device__ __forceinline__ void finish_run(const Params& p, uint64_t key, int64_t run_start, const V (&acc)[J],
                                           int lg, int lr_log2, int cols, unsigned gmask) {
  const int L = 1 << lr_log2;
  if (p.mode == kReduce) {
    const int64_t r = p.ranks[run_start];
    if (lg == 0) p.out_ids[r] = int64_t(key);
    V* out = reinterpret_cast<V*>(p.out_sums + r * p.d);
#pragma unroll
    for (int jj = 0; jj < J; ++jj) {
      const int c = lg + jj * L;
      if (c < cols) out[c] = acc[jj];
    }
    return;
  }
  if (key >= p.total_rows) return;  // the sentinel of invalid ids (the same for the whole group)
  const int64_t base = int64_t(key) * p.d;
  const float lr = *p.lr;
  const bool sr = p.round_seed != nullptr;
  const uint64_t seed = sr ? *p.round_seed : 0;
  if (p.mode == kSgd) {
#pragma unroll
    for (int jj = 0; jj < J; ++jj) {
      const int c = lg + jj * L;
      if (c < cols) store_w(p, base, key, c, sgd(load_w<V>(p, base, c), acc[jj], lr), sr, seed);
    }
    return;
  }
  // Adagrad: the row's mean square, reduced over the group by a butterfly (every lane ends with the same
  // bits: each step adds the same two values).
  float sq = 0.f;
#pragma unroll
  for (int jj = 0; jj < J; ++jj) {
    const int c = lg + jj * L;
    if (c < cols) sq += vsumsq(acc[jj]);
  }
  for (int o = L >> 1; o > 0; o >>= 1) sq += __shfl_xor_sync(gmask, sq, o, L);
  // The state is read and written by the group's lane 0 alone; the others get its value.
  float s_old = lg == 0 ? p.state[key] : 0.f;
  s_old = __shfl_sync(gmask, s_old, 0, L);
  const float s = s_old + sq / float(p.d);
  if (lg == 0) p.state[key] = s;
  const float denom = sqrtf(s) + p.eps;
#pragma unroll
  for (int jj = 0; jj < J; ++jj) {
    const int c = lg + jj * L;
    if (c < cols) store_w(p, base, key, c, adagrad(load_w<V>(p, base, c), acc[jj], lr, denom), sr, seed);
  }
}

// acc (+)= the row at `row` (lane lg's vectors).
template <class V, int J>
__device__ __forceinline__ void add_row(V (&acc)[J], const float* __restrict__ row, int lg, int L, int cols) {
  const V* r = reinterpret_cast<const V*>(row);
#pragma unroll
  for (int jj = 0; jj < J; ++jj) {
    const int c = lg + jj * L;
    if (c < cols) vadd(acc[jj], __ldg(r + c));
  }
}

template <class V, int J>
__device__ __forceinline__ void store_row(float* __restrict__ row, const V (&acc)[J], int lg, int L, int cols) {
  V* r = reinterpret_cast<V*>(row);
#pragma unroll
  for (int jj = 0; jj < J; ++jj) {
    const int c = lg + jj * L;
    if (c < cols) r[c] = acc[jj];
  }
}

// acc = sum of the gradient rows of sorted entries from, from + step, ... < to (positions in `sp`), in
// that order.
template <class V, int J>
__device__ __forceinline__ void sum_entries(V (&acc)[J], const int32_t* sp, int from, int to, int step,
                                            const float* __restrict__ grad, int64_t d, int lg, int L, int cols) {
#pragma unroll
  for (int jj = 0; jj < J; ++jj) vzero(acc[jj]);
  if constexpr (J == 1) {
    if (lg >= cols) return;
    // Four independent loads in flight, added in order.
    int j = from;
    for (; j + 3 * step < to; j += 4 * step) {
      const V a = __ldg(reinterpret_cast<const V*>(grad + int64_t(sp[j]) * d) + lg);
      const V b = __ldg(reinterpret_cast<const V*>(grad + int64_t(sp[j + step]) * d) + lg);
      const V c = __ldg(reinterpret_cast<const V*>(grad + int64_t(sp[j + 2 * step]) * d) + lg);
      const V e = __ldg(reinterpret_cast<const V*>(grad + int64_t(sp[j + 3 * step]) * d) + lg);
      vadd(acc[0], a);
      vadd(acc[0], b);
      vadd(acc[0], c);
      vadd(acc[0], e);
    }
    for (; j < to; j += step) vadd(acc[0], __ldg(reinterpret_cast<const V*>(grad + int64_t(sp[j]) * d) + lg));
  } else {
#pragma unroll 1
    for (int j = from; j < to; j += step) add_row(acc, grad + int64_t(sp[j]) * d, lg, L, cols);
  }
}

// Sums the groups of a warp: a butterfly over the lane bits above the group's (all lanes take part; every
// group ends with the same bits).
template <class V, int J>
__device__ __forceinline__ void combine_groups(V (&acc)[J], int lr_log2) {
  for (int o = 1 << lr_log2; o < kTile; o <<= 1) {
#pragma unroll
    for (int jj = 0; jj < J; ++jj) vadd(acc[jj], shfl_xor(kFull, acc[jj], o));
  }
}

__device__ __forceinline__ unsigned group_mask(int g, int lr_log2) {
  const int L = 1 << lr_log2;
  return L == kTile ? kFull : (((1u << L) - 1u) << (g * L));
}

template <class Key, int VEC, int J>
__global__ void __launch_bounds__(kBlock)
    tile_kernel(const Key* __restrict__ keys, const int32_t* __restrict__ pos, int64_t n,
                const float* __restrict__ grad, int cols, int lr_log2, float* __restrict__ p_left,
                float* __restrict__ p_right, int32_t* __restrict__ right_start, Params p) {
  using V = typename VecOf<VEC>::T;
  __shared__ Key s_key[kWarps][kTile];
  __shared__ int32_t s_pos[kWarps][kTile];
  __shared__ int32_t s_seg[kWarps][kTile + 1];  // start of segment r; s_seg[nseg] = cnt
  const int warp = int(threadIdx.x) / kTile, lane = int(threadIdx.x) % kTile;
  const int64_t ntiles = (n + kTile - 1) / kTile;
  const int64_t tile = int64_t(blockIdx.x) * kWarps + warp;
  if (tile >= ntiles) return;  // the whole warp; no block-wide barrier follows
  const int64_t base = tile * kTile;
  const int cnt = int(min(int64_t(kTile), n - base));
  const int64_t d = p.d;

  Key k = 0;
  int32_t ps = 0;
  if (lane < cnt) {
    k = keys[base + lane];
    ps = pos[base + lane];
  }
  s_key[warp][lane] = k;
  s_pos[warp][lane] = ps;
  const Key up = __shfl_up_sync(kFull, k, 1);
  const bool seg_start = lane < cnt && (lane == 0 || k != up);
  const unsigned seg_mask = __ballot_sync(kFull, seg_start);
  const int nseg = __popc(seg_mask);
  if (seg_start) s_seg[warp][__popc(seg_mask & ((1u << lane) - 1u))] = lane;
  if (lane == 0) s_seg[warp][nseg] = cnt;
  const Key first_key = __shfl_sync(kFull, k, 0);
  const Key last_key = __shfl_sync(kFull, k, cnt - 1);
  // Does the first segment's run begin in an earlier tile, the last one's go on into the next tile?
  const bool open_left = base > 0 && keys[base - 1] == first_key;
  const bool open_right = base + cnt < n && keys[base + cnt] == last_key;
  __syncwarp();

  const int L = 1 << lr_log2;
  const int G = kTile >> lr_log2;  // groups per warp
  const int g = lane >> lr_log2, lg = lane & (L - 1);
  const unsigned gmask = group_mask(g, lr_log2);
  const int32_t* sp = s_pos[warp];
  V acc[J];

  auto finish = [&](int st, bool first, bool last) {
    if (first && open_left) {
      store_row(p_left + tile * d, acc, lg, L, cols);
    } else if (last && open_right) {
      store_row(p_right + tile * d, acc, lg, L, cols);
      if (lg == 0) right_start[tile] = int32_t(base + st);
    } else {
      finish_run(p, uint64_t(s_key[warp][st]), base + st, acc, lg, lr_log2, cols, gmask);
    }
  };

  if (nseg == 1) {
    // One segment (heavy duplicates): every group sums a strided share, then the groups combine.
    sum_entries(acc, sp, g, cnt, G, grad, d, lg, L, cols);
    combine_groups(acc, lr_log2);
    if (g == 0) finish(0, true, true);
  } else {
    // Segments dealt round-robin to the groups, which run side by side; each sums its segment in order.
    const int32_t* seg = s_seg[warp];
    for (int s = g; s < nseg; s += G) {
      const int st = seg[s];
      sum_entries(acc, sp, st, seg[s + 1], 1, grad, d, lg, L, cols);
      finish(st, s == 0, s == nseg - 1);
    }
  }
}

// For the span head `tile` of key K (keys[(tile+1)*32] == K): the number of tiles its run touches,
// t1 - tile + 1 with t1 the last tile whose first key is K. Warp-wide (every lane gets the answer):
// a 32-way exponential probe, then 32-way narrowing.
template <class Key>
__device__ __forceinline__ int64_t span_tiles(const Key* __restrict__ keys, int64_t ntiles, int64_t tile, Key K,
                                              int lane) {
  auto probe = [&](int64_t j) { return tile + j < ntiles && keys[(tile + j) * kTile] == K; };
  // P(j) holds for 1 <= j <= t1 - tile and fails above; lane l probes j = 2^l.
  bool ok = lane < 31 && probe(int64_t(1) << lane);
  unsigned bal = __ballot_sync(kFull, ok);
  const int top = __ffs(~bal) - 1;  // >= 1: P(1) holds
  if (top == 0) return 1;
  int64_t lo = int64_t(1) << (top - 1), hi = int64_t(1) << top;  // P(lo), not P(hi)
  while (hi - lo > 1) {
    const int64_t step = (hi - lo + kTile - 1) / kTile;
    const int64_t j = lo + step * (lane + 1);
    ok = j < hi && probe(j);
    bal = __ballot_sync(kFull, ok);
    const int c = __popc(bal);  // the probes that hold are lanes 0..c-1
    lo += step * c;
    hi = min(hi, lo + step);
  }
  return lo + 1;
}

template <class Key, int VEC, int J>
__global__ void __launch_bounds__(kBlock)
    span_kernel(const Key* __restrict__ keys, int64_t n, int cols, int lr_log2, const float* __restrict__ p_left,
                const float* __restrict__ p_right, const int32_t* __restrict__ right_start, Params p) {
  using V = typename VecOf<VEC>::T;
  __shared__ int64_t s_tile[kWarps];
  __shared__ int64_t s_heavy[kWarps];
  __shared__ V s_part[kWarps][kTile];
  const int warp = int(threadIdx.x) / kTile, lane = int(threadIdx.x) % kTile;
  const int64_t ntiles = (n + kTile - 1) / kTile;
  const int64_t tile = int64_t(blockIdx.x) * kWarps + warp;
  const int64_t d = p.d;
  const int L = 1 << lr_log2;
  const int G = kTile >> lr_log2;
  const int g = lane >> lr_log2, lg = lane & (L - 1);

  // Is this tile a span head (its last run begins here and goes on into the next tile)? Every lane loads
  // the same addresses, so the answer is warp-uniform.
  int64_t m = 0;
  Key K = 0;
  if (tile < ntiles) {
    const int64_t base = tile * kTile, end = min(base + kTile, n);
    if (end < n) {
      K = keys[end - 1];
      if (keys[end] == K && (base == 0 || keys[base - 1] != K)) m = span_tiles(keys, ntiles, tile, K, lane);
    }
  }
  // Term j of a span: j == 0 the head's right partial, else the left partial of tile head + j.
  auto term = [&](int64_t head, int64_t j) { return j == 0 ? p_right + head * d : p_left + (head + j) * d; };

  const int warp_max = 8 * G;  // longer spans go to the whole block
  if (lane == 0) {
    s_tile[warp] = tile;
    s_heavy[warp] = m > warp_max ? m : 0;
  }
  V acc[J];
  if (m >= 2 && m <= warp_max) {
#pragma unroll
    for (int jj = 0; jj < J; ++jj) vzero(acc[jj]);
    for (int64_t j = g; j < m; j += G) add_row(acc, term(tile, j), lg, L, cols);
    combine_groups(acc, lr_log2);
    if (g == 0) finish_run(p, uint64_t(K), right_start[tile], acc, lg, lr_log2, cols, group_mask(0, lr_log2));
  }
  __syncthreads();

  // Long spans: all groups of the block take strided shares; warps combine by butterflies, then warp 0
  // adds the warps' sums in order.
  const int gid = int(threadIdx.x) >> lr_log2;
  const int GB = kBlock >> lr_log2;
  for (int w = 0; w < kWarps; ++w) {
    const int64_t hm = s_heavy[w];
    if (hm == 0) continue;  // block-uniform
    const int64_t head = s_tile[w];
#pragma unroll
    for (int jj = 0; jj < J; ++jj) vzero(acc[jj]);
    for (int64_t j = gid; j < hm; j += GB) add_row(acc, term(head, j), lg, L, cols);
    combine_groups(acc, lr_log2);
#pragma unroll
    for (int jj = 0; jj < J; ++jj) {
      if (lane < L) s_part[warp][lane] = acc[jj];
      __syncthreads();
      if (warp == 0 && lane < L) {
        V v = s_part[0][lane];
        for (int w2 = 1; w2 < kWarps; ++w2) vadd(v, s_part[w2][lane]);
        acc[jj] = v;
      }
      __syncthreads();
    }
    if (warp == 0 && lane < L)
      finish_run(p, uint64_t(keys[(head + 1) * kTile - 1]), right_start[head], acc, lg, lr_log2, cols,
                 group_mask(0, lr_log2));
  }
}

// ---- sparse update: host side -------------------------------------------------------------------

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

int bit_width(uint64_t v) {
  int b = 0;
  while (v != 0) {
    ++b;
    v >>= 1;
  }
  return b;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Keys are 32-bit whenever total_rows (the sentinel) fits.
bool wide_keys(int64_t total_rows) { return uint64_t(total_rows) > uint64_t(UINT32_MAX); }

struct Layout {
  size_t keys_a = 0, keys_b = 0, pos_a = 0, pos_b = 0, p_left = 0, p_right = 0, right_start = 0, flags = 0,
         ranks = 0, temp = 0, temp_bytes = 0, total = 0;
};

template <class Key>
Layout layout_for(int64_t n, int64_t d) {
  // CUB's temporary storage: the sort over every bit of the key (an upper bound for fewer bits) and the
  // scan of the reduce mode share one region.
  size_t sort_bytes = 0, scan_bytes = 0;
  cub::DoubleBuffer<Key> kb(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> vb(nullptr, nullptr);
  SLUICE_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, kb, vb, int(n), 0, int(sizeof(Key) * 8)));
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), int(n)));
  const size_t ntiles = size_t((n + kTile - 1) / kTile);
  Layout l;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t off = at;
    at += align_up(std::max<size_t>(bytes, 1));
    return off;
  };
  l.keys_a = take(size_t(n) * sizeof(Key));
  l.keys_b = take(size_t(n) * sizeof(Key));
  l.pos_a = take(size_t(n) * 4);
  l.pos_b = take(size_t(n) * 4);
  l.p_left = take(ntiles * size_t(d) * 4);
  l.p_right = take(ntiles * size_t(d) * 4);
  l.right_start = take(ntiles * 4);
  l.flags = take(size_t(n) * 4);
  l.ranks = take(size_t(n) * 4);
  l.temp_bytes = std::max(sort_bytes, scan_bytes);
  l.temp = take(l.temp_bytes);
  l.total = at;
  return l;
}

int blocks_for(int64_t n, int threads) { return int(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 4096))); }

int log2_ceil_pow2(int v) {  // log2 of the smallest power of two >= v, at most 5 (32 lanes)
  int l = 0;
  while ((1 << l) < v && l < 5) ++l;
  return l;
}

template <class Key, int VEC, int J>
void launch_update(const Key* keys, const int32_t* pos, int64_t n, const float* grad, int cols, int lr_log2,
                   float* p_left, float* p_right, int32_t* right_start, const Params& p, cudaStream_t stream) {
  const int64_t ntiles = (n + kTile - 1) / kTile;
  const int64_t blocks = (ntiles + kWarps - 1) / kWarps;
  tile_kernel<Key, VEC, J><<<unsigned(blocks), kBlock, 0, stream>>>(keys, pos, n, grad, cols, lr_log2, p_left,
                                                                     p_right, right_start, p);
  SLUICE_CUDA_LAUNCHED("sparse update: tiles");
  if (ntiles > 1) {
    span_kernel<Key, VEC, J><<<unsigned(blocks), kBlock, 0, stream>>>(keys, n, cols, lr_log2, p_left, p_right,
                                                                       right_start, p);
    SLUICE_CUDA_LAUNCHED("sparse update: spans");
  }
}

template <class Key, int VEC>
void launch_update_j(int j, const Key* keys, const int32_t* pos, int64_t n, const float* grad, int cols,
                     int lr_log2, float* p_left, float* p_right, int32_t* right_start, const Params& p,
                     cudaStream_t stream) {
  if (j <= 1) launch_update<Key, VEC, 1>(keys, pos, n, grad, cols, lr_log2, p_left, p_right, right_start, p, stream);
  else if (j <= 4) launch_update<Key, VEC, 4>(keys, pos, n, grad, cols, lr_log2, p_left, p_right, right_start, p, stream);
  else launch_update<Key, VEC, 16>(keys, pos, n, grad, cols, lr_log2, p_left, p_right, right_start, p, stream);
}

template <class Id, class Key>
void run_keyed(int mode, void* table, int elem, const uint64_t* round_seed, float* state, int64_t total_rows, int64_t d, const Id* ids, const float* grad,
               int64_t n, const float* lr, float eps, int64_t* out_ids, float* out_sums, int64_t* count, void* ws,
               size_t ws_bytes, cudaStream_t stream) {
  const Layout l = layout_for<Key>(n, d);
  if (ws == nullptr || ws_bytes < l.total)
    throw Error("sparse update: workspace of " + std::to_string(ws_bytes) + " bytes, " + std::to_string(l.total) +
                " needed (sparse_update_workspace_bytes)");
  if (!aligned16(ws)) throw Error("sparse update: the workspace must be 16-byte aligned");
  char* w = static_cast<char*>(ws);
  Key* keys_a = reinterpret_cast<Key*>(w + l.keys_a);
  Key* keys_b = reinterpret_cast<Key*>(w + l.keys_b);
  int32_t* pos_a = reinterpret_cast<int32_t*>(w + l.pos_a);
  int32_t* pos_b = reinterpret_cast<int32_t*>(w + l.pos_b);
  float* p_left = reinterpret_cast<float*>(w + l.p_left);
  float* p_right = reinterpret_cast<float*>(w + l.p_right);
  int32_t* right_start = reinterpret_cast<int32_t*>(w + l.right_start);
  int32_t* flags = reinterpret_cast<int32_t*>(w + l.flags);
  int32_t* ranks = reinterpret_cast<int32_t*>(w + l.ranks);
  void* temp = w + l.temp;

  prepare_kernel<Id, Key><<<blocks_for(n, 256), 256, 0, stream>>>(ids, n, uint64_t(total_rows), keys_a, pos_a);
  SLUICE_CUDA_LAUNCHED("sparse update: keys");
  cub::DoubleBuffer<Key> kbuf(keys_a, keys_b);
  cub::DoubleBuffer<int32_t> vbuf(pos_a, pos_b);
  size_t temp_bytes = l.temp_bytes;
  // Bits of the largest key (the sentinel total_rows included).
  const int end_bit = bit_width(uint64_t(total_rows));
  SLUICE_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, kbuf, vbuf, int(n), 0, end_bit, stream));
  const Key* keys = kbuf.Current();
  const int32_t* pos = vbuf.Current();

  if (mode == kReduce) {
    head_flags_kernel<Key><<<blocks_for(n, 256), 256, 0, stream>>>(keys, n, flags);
    SLUICE_CUDA_LAUNCHED("sparse reduce: run heads");
    temp_bytes = l.temp_bytes;
    SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(temp, temp_bytes, flags, ranks, int(n), stream));
    count_kernel<<<1, 32, 0, stream>>>(flags, ranks, n, count);
    SLUICE_CUDA_LAUNCHED("sparse reduce: count");
  }

  Params p{};
  p.table = table;
  p.elem = elem;
  p.round_seed = elem == kF32 ? nullptr : round_seed;
  p.state = state;
  p.lr = lr;
  p.eps = eps;
  p.total_rows = uint64_t(total_rows);
  p.d = d;
  p.mode = mode;
  p.ranks = ranks;
  p.out_ids = out_ids;
  p.out_sums = out_sums;

  // float4 rows when d % 4 == 0 and every row pointer is 16-byte aligned (the partials are).
  const bool vec4 = d % 4 == 0 && aligned16(grad) && (mode == kReduce ? aligned16(out_sums) : aligned16(table)) &&
                    d / 4 <= 16 * kTile;  // (a half table's rows of d % 4 == 0 elements are then 8-byte aligned)
  const int64_t cols64 = vec4 ? d / 4 : d;
  if (cols64 > 16 * kTile)
    throw Error("sparse update: d = " + std::to_string(d) + " is too wide (at most 512, or 2048 with d % 4 == 0)");
  const int cols = int(cols64);
  const int lr_log2 = log2_ceil_pow2(cols);
  const int j = (cols + (1 << lr_log2) - 1) >> lr_log2;  // vectors per lane
  if (vec4)
    launch_update_j<Key, 4>(j, keys, pos, n, grad, cols, lr_log2, p_left, p_right, right_start, p, stream);
  else
    launch_update_j<Key, 1>(j, keys, pos, n, grad, cols, lr_log2, p_left, p_right, right_start, p, stream);
}

template <class Id>
void run_sparse(int mode, void* table, int elem, const uint64_t* round_seed, float* state, int64_t total_rows, int64_t d, const Id* ids, const float* grad,
                int64_t n, const float* lr, float eps, int64_t* out_ids, float* out_sums, int64_t* count, void* ws,
                size_t ws_bytes, cudaStream_t stream) {
  const char* what = mode == kSgd ? "sparse_sgd" : mode == kAdagrad ? "sparse_adagrad" : "sparse_reduce";
  if (n < 0 || n > kMaxIds) throw Error(std::string(what) + ": n = " + std::to_string(n) + " out of range");
  if (d < 1) throw Error(std::string(what) + ": d must be positive");
  if (total_rows < 1) throw Error(std::string(what) + ": total_rows must be positive");
  if (mode == kReduce) {
    if (count == nullptr) throw Error(std::string(what) + ": count is null");
    if (n == 0) {
      SLUICE_CUDA(cudaMemsetAsync(count, 0, sizeof(int64_t), stream));
      return;
    }
    if (out_ids == nullptr || out_sums == nullptr) throw Error(std::string(what) + ": null output");
  } else {
    if (n == 0) return;
    if (table == nullptr || lr == nullptr || (mode == kAdagrad && state == nullptr))
      throw Error(std::string(what) + ": null table, state or learning rate");
  }
  if (ids == nullptr || grad == nullptr) throw Error(std::string(what) + ": null ids or gradient");
  if (wide_keys(total_rows))
    run_keyed<Id, uint64_t>(mode, table, elem, round_seed, state, total_rows, d, ids, grad, n, lr, eps, out_ids, out_sums, count, ws,
                            ws_bytes, stream);
  else
    run_keyed<Id, uint32_t>(mode, table, elem, round_seed, state, total_rows, d, ids, grad, n, lr, eps, out_ids, out_sums, count, ws,
                            ws_bytes, stream);
}

template <class Id, int VEC>
void launch_gather(const void* table, int elem, int64_t d, const Id* ids, int64_t n, float* out, int cols,
                   int lr_log2, int blocks, cudaStream_t stream) {
  if (elem == kF16) gather_kernel<Id, VEC, kF16><<<blocks, 256, 0, stream>>>(table, d, ids, n, out, cols, lr_log2);
  else if (elem == kBF16) gather_kernel<Id, VEC, kBF16><<<blocks, 256, 0, stream>>>(table, d, ids, n, out, cols, lr_log2);
  else gather_kernel<Id, VEC, kF32><<<blocks, 256, 0, stream>>>(table, d, ids, n, out, cols, lr_log2);
}

template <class Id>
void gather_impl(const void* table, int elem, int64_t d, const Id* ids, int64_t n, float* out, cudaStream_t stream) {
  if (n < 0 || d < 1) throw Error("gather_rows: bad n or d");
  if (n == 0) return;
  if (table == nullptr || ids == nullptr || out == nullptr) throw Error("gather_rows: null pointer");
  const bool vec4 = d % 4 == 0 && aligned16(table) && aligned16(out) && d / 4 <= INT32_MAX;
  const int64_t cols64 = vec4 ? d / 4 : d;
  if (cols64 > INT32_MAX) throw Error("gather_rows: d too large");
  const int cols = int(cols64);
  const int lr_log2 = log2_ceil_pow2(cols);
  const int64_t rows_per_block = 256 >> lr_log2;
  const int blocks = int(std::max<int64_t>(1, std::min<int64_t>((n + rows_per_block - 1) / rows_per_block, 1 << 20)));
  if (vec4) launch_gather<Id, 4>(table, elem, d, ids, n, out, cols, lr_log2, blocks, stream);
  else launch_gather<Id, 1>(table, elem, d, ids, n, out, cols, lr_log2, blocks, stream);
  SLUICE_CUDA_LAUNCHED("gather_rows");
}

}  // namespace

size_t elem_bytes(Elem e) { return e == Elem::kF32 ? 4 : 2; }

void gather_rows(const float* table, int64_t d, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  gather_impl(table, kF32, d, ids, n, out, stream);
}
void gather_rows(const float* table, int64_t d, const int64_t* ids, int64_t n, float* out, cudaStream_t stream) {
  gather_impl(table, kF32, d, ids, n, out, stream);
}
void gather_rows(const TableRef& t, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  gather_impl(t.data, int(t.elem), t.d, ids, n, out, stream);
}
void gather_rows(const TableRef& t, const int64_t* ids, int64_t n, float* out, cudaStream_t stream) {
  gather_impl(t.data, int(t.elem), t.d, ids, n, out, stream);
}

void init_rows(void* dst, Elem elem, uint64_t seed, int table, int64_t first_row, int64_t rows, int64_t d, float scale,
               cudaStream_t stream) {
  if (rows < 0 || d < 1 || first_row < 0) throw Error("init_rows: bad rows or d");
  if (rows == 0) return;
  if (dst == nullptr) throw Error("init_rows: null destination");
  const uint64_t key = num::init_table_key(seed, table);
  const int blocks = blocks_for(rows * d, 256);
  if (elem == Elem::kF16) init_kernel<kF16><<<blocks, 256, 0, stream>>>(dst, key, first_row, rows, d, scale);
  else if (elem == Elem::kBF16) init_kernel<kBF16><<<blocks, 256, 0, stream>>>(dst, key, first_row, rows, d, scale);
  else init_kernel<kF32><<<blocks, 256, 0, stream>>>(dst, key, first_row, rows, d, scale);
  SLUICE_CUDA_LAUNCHED("init_rows");
}

size_t sparse_update_workspace_bytes(int64_t n, int64_t d, int64_t total_rows) {
  if (n < 0 || n > kMaxIds || d < 1 || total_rows < 1)
    throw Error("sparse_update_workspace_bytes: n, d or total_rows out of range");
  if (n == 0) return 0;
  return wide_keys(total_rows) ? layout_for<uint64_t>(n, d).total : layout_for<uint32_t>(n, d).total;
}

void sparse_sgd(float* table, int64_t total_rows, int64_t d, const int32_t* ids, const float* grad, int64_t n,
                const float* lr, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  run_sparse(kSgd, table, kF32, nullptr, nullptr, total_rows, d, ids, grad, n, lr, 0.f, nullptr, nullptr, nullptr,
             workspace, workspace_bytes, stream);
}
void sparse_sgd(float* table, int64_t total_rows, int64_t d, const int64_t* ids, const float* grad, int64_t n,
                const float* lr, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  run_sparse(kSgd, table, kF32, nullptr, nullptr, total_rows, d, ids, grad, n, lr, 0.f, nullptr, nullptr, nullptr,
             workspace, workspace_bytes, stream);
}

void sparse_adagrad(float* table, float* state, int64_t total_rows, int64_t d, const int32_t* ids, const float* grad,
                    int64_t n, const float* lr, float eps, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  run_sparse(kAdagrad, table, kF32, nullptr, state, total_rows, d, ids, grad, n, lr, eps, nullptr, nullptr, nullptr,
             workspace, workspace_bytes, stream);
}
void sparse_adagrad(float* table, float* state, int64_t total_rows, int64_t d, const int64_t* ids, const float* grad,
                    int64_t n, const float* lr, float eps, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  run_sparse(kAdagrad, table, kF32, nullptr, state, total_rows, d, ids, grad, n, lr, eps, nullptr, nullptr, nullptr,
             workspace, workspace_bytes, stream);
}

void sparse_sgd(const TableRef& t, const int32_t* ids, const float* grad, int64_t n, const float* lr,
                const uint64_t* round_seed, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  run_sparse(kSgd, t.data, int(t.elem), round_seed, nullptr, t.rows, t.d, ids, grad, n, lr, 0.f, nullptr, nullptr,
             nullptr, workspace, workspace_bytes, stream);
}
void sparse_sgd(const TableRef& t, const int64_t* ids, const float* grad, int64_t n, const float* lr,
                const uint64_t* round_seed, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  run_sparse(kSgd, t.data, int(t.elem), round_seed, nullptr, t.rows, t.d, ids, grad, n, lr, 0.f, nullptr, nullptr,
             nullptr, workspace, workspace_bytes, stream);
}
void sparse_adagrad(const TableRef& t, float* state, const int32_t* ids, const float* grad, int64_t n,
                    const float* lr, float eps, const uint64_t* round_seed, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  run_sparse(kAdagrad, t.data, int(t.elem), round_seed, state, t.rows, t.d, ids, grad, n, lr, eps, nullptr, nullptr,
             nullptr, workspace, workspace_bytes, stream);
}
void sparse_adagrad(const TableRef& t, float* state, const int64_t* ids, const float* grad, int64_t n,
                    const float* lr, float eps, const uint64_t* round_seed, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  run_sparse(kAdagrad, t.data, int(t.elem), round_seed, state, t.rows, t.d, ids, grad, n, lr, eps, nullptr, nullptr,
             nullptr, workspace, workspace_bytes, stream);
}

void sparse_reduce(int64_t total_rows, int64_t d, const int32_t* ids, const float* grad, int64_t n,
                   int64_t* unique_ids, float* sums, int64_t* count, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream) {
  run_sparse(kReduce, nullptr, kF32, nullptr, nullptr, total_rows, d, ids, grad, n, nullptr, 0.f, unique_ids, sums, count,
             workspace, workspace_bytes, stream);
}
void sparse_reduce(int64_t total_rows, int64_t d, const int64_t* ids, const float* grad, int64_t n,
                   int64_t* unique_ids, float* sums, int64_t* count, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream) {
  run_sparse(kReduce, nullptr, kF32, nullptr, nullptr, total_rows, d, ids, grad, n, nullptr, 0.f, unique_ids, sums, count,
             workspace, workspace_bytes, stream);
}

}  // namespace sluice::train::kernels
