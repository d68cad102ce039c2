// The dot interaction of interaction.hpp, forward and backward, one kernel each.
//
// A block of 352 threads handles S consecutive samples (S from the shared memory a sample needs, at most
// 8). It stages T = [x; e_1..e_26] of its samples in shared memory (rows padded to an odd number of
// vectors, so that threads reading different rows at the same column hit different banks), then
//   forward:  one thread per pair (i, j), over the samples: a dot product over d, in column order, fma
//             by fma;
//   backward: one thread per (vector i, column vector), over the samples: the sum over j != i ascending
//             of dr_pair(i, j) * T_j, the pair gradients staged in shared memory too.
// The index arithmetic is done once per thread, not per sample; global reads and writes are
// row-contiguous across the threads of a block.
#include "trainer/cuda/interaction.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "engine/cuda/detail/check.hpp"
#include "trainer/cuda/vec.cuh"
#include "sluice/source.hpp"

namespace sluice::train::kernels {

namespace {

constexpr int kV = kInteractionVectors;  // 27
constexpr int kP = kInteractionPairs;    // 351
constexpr int kPStride = 353;            // staged pair gradients per sample (odd: samples in other banks)
constexpr int kThreads = 352;            // >= 351: one thread per pair in the forward
constexpr int kMaxSamples = 8;
constexpr size_t kSmemTarget = 32 * 1024;
constexpr size_t kSmemMax = 48 * 1024;

using detail::VecOf;

__device__ __forceinline__ float dot_acc(float acc, float a, float b) { return fmaf(a, b, acc); }
__device__ __forceinline__ float dot_acc(float acc, const float4& a, const float4& b) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}
__device__ __forceinline__ void axpy(float& acc, float g, float t) { acc = fmaf(g, t, acc); }
__device__ __forceinline__ void axpy(float4& acc, float g, const float4& t) {
  acc.x = fmaf(g, t.x, acc.x);
  acc.y = fmaf(g, t.y, acc.y);
  acc.z = fmaf(g, t.z, acc.z);
  acc.w = fmaf(g, t.w, acc.w);
}
__device__ __forceinline__ void vzero(float& a) { a = 0.f; }
__device__ __forceinline__ void vzero(float4& a) { a = make_float4(0.f, 0.f, 0.f, 0.f); }
__device__ __forceinline__ void add_comp(float& a, int, float v) { a += v; }
__device__ __forceinline__ void add_comp(float4& a, int c, float v) {
  if (c == 0) a.x += v;
  else if (c == 1) a.y += v;
  else if (c == 2) a.z += v;
  else a.w += v;
}

// Pair index p (0..350) -> (i, j), i in 1..26, j < i, p = i(i-1)/2 + j.
__device__ __forceinline__ void pair_of(int p, int& i, int& j) {
  i = int((1.0f + sqrtf(8.0f * float(p) + 1.0f)) * 0.5f);
  while (i * (i - 1) / 2 > p) --i;
  while ((i + 1) * i / 2 <= p) ++i;
  j = p - i * (i - 1) / 2;
}

// Stages T of samples b0 .. b0+ns-1 into t ([ns][27][ldv] vectors of VEC floats): thread q of the block
// takes the slots q, q + blockDim, ... of the 27 x dv vectors of a sample, for every sample.
template <int VEC>
__device__ __forceinline__ void stage(const float* __restrict__ x, const float* __restrict__ e, int64_t b0, int ns,
                                      int d, int ldv, typename VecOf<VEC>::T* t) {
  using V = typename VecOf<VEC>::T;
  const int dv = d / VEC;
  const V* xv = reinterpret_cast<const V*>(x);
  const V* ev = reinterpret_cast<const V*>(e);
  for (int q = threadIdx.x; q < kV * dv; q += blockDim.x) {
    const int i = q / dv, kv = q - i * dv;
    // Every sample's load first (all in flight at once), then the stores.
    V v[kMaxSamples];
#pragma unroll
    for (int s = 0; s < kMaxSamples; ++s)
      if (s < ns)
        v[s] = i == 0 ? __ldg(xv + (b0 + s) * dv + kv) : __ldg(ev + ((b0 + s) * (kV - 1) + (i - 1)) * dv + kv);
#pragma unroll
    for (int s = 0; s < kMaxSamples; ++s)
      if (s < ns) t[(s * kV + i) * ldv + kv] = v[s];
  }
}

// One thread per pair (blockDim >= 351), over the block's samples.
template <int VEC>
__global__ void __launch_bounds__(kThreads, 3)
    forward_kernel(const float* __restrict__ x, const float* __restrict__ e, int64_t batch, int d, int ldv, int S,
                   float* __restrict__ r) {
  using V = typename VecOf<VEC>::T;
  extern __shared__ float4 smem[];
  V* t = reinterpret_cast<V*>(smem);
  const int64_t b0 = int64_t(blockIdx.x) * S;
  const int ns = int(min(int64_t(S), batch - b0));
  const int dv = d / VEC;
  stage<VEC>(x, e, b0, ns, d, ldv, t);
  __syncthreads();
  const int64_t w = d + kP;
  // r[:, :d] = x, from the staged copy.
  const float* tf = reinterpret_cast<const float*>(t);
  for (int q = threadIdx.x; q < ns * d; q += blockDim.x) {
    const int s = q / d, k = q - s * d;
    r[(b0 + s) * w + k] = tf[(s * kV) * ldv * VEC + k];
  }
  const int p = threadIdx.x;
  if (p >= kP) return;
  int i, j;
  pair_of(p, i, j);
  for (int s = 0; s < ns; ++s) {
    const V* ti = t + (s * kV + i) * ldv;
    const V* tj = t + (s * kV + j) * ldv;
    float acc = 0.f;
    for (int kv = 0; kv < dv; ++kv) acc = dot_acc(acc, ti[kv], tj[kv]);
    r[(b0 + s) * w + d + p] = acc;
  }
}

// One thread per (vector i, column vector kv) slot; when a sample has fewer slots than the block has
// threads, the block's threads form replicas that take every R-th sample.
template <int VEC>
__global__ void __launch_bounds__(kThreads, 3)
    backward_kernel(const float* __restrict__ x, const float* __restrict__ e, const float* __restrict__ dr,
                    int64_t batch, int d, int ldv, int S, float* __restrict__ dx, float* __restrict__ de) {
  using V = typename VecOf<VEC>::T;
  extern __shared__ float4 smem[];
  V* t = reinterpret_cast<V*>(smem);
  float* gp = reinterpret_cast<float*>(t + S * kV * ldv);  // [S][kPStride]
  const int64_t b0 = int64_t(blockIdx.x) * S;
  const int ns = int(min(int64_t(S), batch - b0));
  const int dv = d / VEC;
  const int64_t w = d + kP;
  stage<VEC>(x, e, b0, ns, d, ldv, t);
  for (int p = threadIdx.x; p < kP; p += blockDim.x) {
    float v[kMaxSamples];
#pragma unroll
    for (int s = 0; s < kMaxSamples; ++s)
      if (s < ns) v[s] = __ldg(dr + (b0 + s) * w + d + p);
#pragma unroll
    for (int s = 0; s < kMaxSamples; ++s)
      if (s < ns) gp[s * kPStride + p] = v[s];
  }
  __syncthreads();

  const int slots = kV * dv;
  const int bd = int(blockDim.x);
  const int reps = slots <= bd ? bd / slots : 1;
  const int rep = slots <= bd ? int(threadIdx.x) / slots : 0;
  if (rep >= reps) return;
  for (int q = slots <= bd ? int(threadIdx.x) - rep * slots : int(threadIdx.x); q < slots; q += (slots <= bd ? slots : bd)) {
    const int i = q / dv, kv = q - i * dv;
    const int tri_i = i * (i - 1) / 2;
    for (int s = rep; s < ns; s += reps) {
      const float* g = gp + s * kPStride;
      const V* ts = t + (s * kV) * ldv + kv;
      V acc;
      vzero(acc);
      // j ascending, j != i: the pair (max, min) sits at max(max-1)/2 + min.
      int tri_j = 0;
#pragma unroll 9
      for (int j = 0; j < kV; ++j) {
        if (j != i) axpy(acc, g[j < i ? tri_i + j : tri_j + i], ts[j * ldv]);
        tri_j += j;
      }
      const int64_t b = b0 + s;
      if (i == 0) {
        const float* drx = dr + b * w + kv * VEC;
#pragma unroll
        for (int c = 0; c < VEC; ++c) add_comp(acc, c, __ldg(drx + c));
        reinterpret_cast<V*>(dx)[b * dv + kv] = acc;
      } else {
        reinterpret_cast<V*>(de)[(b * (kV - 1) + (i - 1)) * dv + kv] = acc;
      }
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Row stride of the staged T in vectors: odd, so that rows start in different banks.
int staged_ldv(int64_t d, int vec) {
  int u = int(d / vec);
  if (u % 2 == 0) ++u;
  return u;
}

struct Shape {
  int ldv = 0, samples = 0;
  size_t smem = 0;
  unsigned blocks = 0;
};

Shape shape_for(int64_t batch, int64_t d, int vec, bool backward) {
  Shape s;
  s.ldv = staged_ldv(d, vec);
  const size_t per_sample = size_t(kV) * size_t(s.ldv) * size_t(vec) * 4 + (backward ? size_t(kPStride) * 4 : 0);
  s.samples = int(std::clamp<size_t>(kSmemTarget / per_sample, 1, kMaxSamples));
  s.samples = int(std::min<int64_t>(s.samples, batch));
  s.smem = per_sample * size_t(s.samples);
  if (s.smem > kSmemMax) throw Error("interaction: d = " + std::to_string(d) + " needs too much shared memory");
  s.blocks = unsigned((batch + s.samples - 1) / s.samples);
  return s;
}

void check_args(const char* what, int64_t batch, int64_t d) {
  if (batch < 0 || batch > int64_t(INT32_MAX)) throw Error(std::string(what) + ": batch out of range");
  if (d < 1 || d > kInteractionMaxDim)
    throw Error(std::string(what) + ": d = " + std::to_string(d) + " out of range (1.." +
                std::to_string(kInteractionMaxDim) + ")");
}

}  // namespace

void interaction_forward(const float* x, const float* e, int64_t batch, int64_t d, float* r, cudaStream_t stream) {
  check_args("interaction_forward", batch, d);
  if (batch == 0) return;
  if (x == nullptr || e == nullptr || r == nullptr) throw Error("interaction_forward: null pointer");
  const bool vec4 = d % 4 == 0 && aligned16(x) && aligned16(e);
  const Shape s = shape_for(batch, d, vec4 ? 4 : 1, false);
  if (vec4)
    forward_kernel<4><<<s.blocks, kThreads, s.smem, stream>>>(x, e, batch, int(d), s.ldv, s.samples, r);
  else
    forward_kernel<1><<<s.blocks, kThreads, s.smem, stream>>>(x, e, batch, int(d), s.ldv, s.samples, r);
  SLUICE_CUDA_LAUNCHED("interaction_forward");
}

void interaction_backward(const float* x, const float* e, const float* dr, int64_t batch, int64_t d, float* dx,
                          float* de, cudaStream_t stream) {
  check_args("interaction_backward", batch, d);
  if (batch == 0) return;
  if (x == nullptr || e == nullptr || dr == nullptr || dx == nullptr || de == nullptr)
    throw Error("interaction_backward: null pointer");
  const bool vec4 = d % 4 == 0 && aligned16(x) && aligned16(e) && aligned16(dx) && aligned16(de);
  const Shape s = shape_for(batch, d, vec4 ? 4 : 1, true);
  if (vec4)
    backward_kernel<4><<<s.blocks, kThreads, s.smem, stream>>>(x, e, dr, batch, int(d), s.ldv, s.samples, dx, de);
  else
    backward_kernel<1><<<s.blocks, kThreads, s.smem, stream>>>(x, e, dr, batch, int(d), s.ldv, s.samples, dx, de);
  SLUICE_CUDA_LAUNCHED("interaction_backward");
}

}  // namespace sluice::train::kernels
