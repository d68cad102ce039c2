// Shared by the trainer's kernels: the vector type of a VEC-wide access (float, or float4 for 16-byte
// loads and stores when a row's width and alignment allow).
#pragma once

#include <cuda_runtime.h>

namespace sluice::train::kernels::detail {

template <int VEC>
struct VecOf;
template <>
struct VecOf<1> {
  using T = float;
};
template <>
struct VecOf<4> {
  using T = float4;
};

}  // namespace sluice::train::kernels::detail
