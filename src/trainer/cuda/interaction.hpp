// GPU kernels for DLRM's dot interaction, float32, one kernel each way. Per sample, T = [x; e_1..e_26]
// (27 vectors of width d: the bottom MLP's output and the 26 gathered embedding rows); the forward
// output is r = [x, T_i . T_j for i in 1..26, j in 0..i-1] (row-major over i then j: the strictly lower
// triangle of T T^T, Meta DLRM's order), width d + 351. Plain references in reference.hpp.
//
// A block stages T (and, backward, the 351 pair gradients) of a few samples in shared memory; every dot
// product and every gradient sum runs in a fixed order (deterministic, no atomics). Any d from 1 to
// kInteractionMaxDim; float4 arithmetic when d % 4 == 0 and the row pointers are 16-byte aligned.
// Errors (bad arguments, a failed launch) throw sluice::Error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace sluice::train::kernels {

inline constexpr int kInteractionVectors = 27;
inline constexpr int kInteractionPairs = kInteractionVectors * (kInteractionVectors - 1) / 2;  // 351
inline constexpr int64_t kInteractionMaxDim = 432;

// Width of the interaction output for embedding width d.
inline constexpr int64_t interaction_width(int64_t d) { return d + kInteractionPairs; }

// x [B, d], e [B, 26, d] -> r [B, d + 351]: r[b, :d] = x[b]; r[b, d + i(i-1)/2 + j] = T_i . T_j.
void interaction_forward(const float* x, const float* e, int64_t batch, int64_t d, float* r, cudaStream_t stream);

// dr [B, d + 351] -> dx [B, d], de [B, 26, d]: dT_i = sum_{j != i} S_ij T_j with S the symmetric matrix of
// the pair gradients (zero diagonal), summed over j ascending; dx = dT_0 + dr[:, :d]; de[:, i-1] = dT_i.
void interaction_backward(const float* x, const float* e, const float* dr, int64_t batch, int64_t d, float* dx,
                          float* de, cudaStream_t stream);

}  // namespace sluice::train::kernels
