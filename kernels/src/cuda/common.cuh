// Device helpers shared by the CUDA op files: bf16 <-> fp32, 16-byte vectors of 8 bf16,
// warp and block reductions, launch-size arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "siesta/kernels/error.hpp"

namespace siesta::kernels::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 to_bf(float x) { return __float2bfloat16_rn(x); }

// 8 bf16 in one 16-byte register group: the unit of every vectorised load and store here.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};
// Through uint4, so that each is ONE 128-bit access (a struct copy of Bf16x8 compiles to four
// 32-bit ones).
__device__ __forceinline__ Bf16x8 load8(const bf16* p) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  Bf16x8 v;
  static_assert(sizeof(v) == sizeof(u));
  __builtin_memcpy(&v, &u, sizeof(v));
  return v;
}
// The same through L2 only (ld.global.cg): for data that another block of the same kernel
// wrote, which this SM's L1 may hold an older copy of.
__device__ __forceinline__ Bf16x8 load8_cg(const bf16* p) {
  const uint4 u = __ldcg(reinterpret_cast<const uint4*>(p));
  Bf16x8 v;
  __builtin_memcpy(&v, &u, sizeof(v));
  return v;
}
__device__ __forceinline__ void store8(bf16* p, const Bf16x8& v) {
  uint4 u;
  __builtin_memcpy(&u, &v, sizeof(u));
  *reinterpret_cast<uint4*>(p) = u;
}
// bf16 is the top half of an fp32, so each widens with one shift or mask (exactly what
// __bfloat1622float2 computes; it compiles to a byte permute and a multiply for the upper one).
__device__ __forceinline__ void unpack8(const Bf16x8& v, float f[8]) {
  uint32_t w[4];
  __builtin_memcpy(w, &v, sizeof(w));
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ Bf16x8 pack8(const float f[8]) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

// One rotary pair (x1, x2) by the angle whose cosine and sine are c and s, rounded the same
// way wherever it is done (explicit products: the compiler may not contract them into FMAs
// differently in different kernels, so the rope kernel and the fused ones agree bit for bit).
__device__ __forceinline__ void rope_pair(float x1, float x2, float c, float s, float& o1,
                                          float& o2) {
  o1 = __fadd_rn(__fmul_rn(x1, c), -__fmul_rn(x2, s));
  o2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block; every thread gets the result. `smem` holds >= 32 floats. Contains
// two barriers, so every thread of the block must call it.
__device__ __forceinline__ float block_sum(float v, float* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < nwarps ? smem[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = (blockDim.x + 31) / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < nwarps ? smem[lane] : -INFINITY;
  return warp_max(v);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline unsigned grid_for(int64_t work, int threads, int64_t cap = int64_t(1) << 20) {
  int64_t g = (work + threads - 1) / threads;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return unsigned(g);
}

// Argument checks raise KernelError with what was asked and what is allowed. The message is a
// string literal or a callable that builds it, called only on failure: the checks run on every
// op call, and building messages there cost each call a few allocations.
inline void require(bool ok, const char* what) {
  if (!ok) throw KernelError(std::string("cuda ops: ") + what);
}
template <class Message, class = std::enable_if_t<std::is_invocable_r_v<std::string, Message&>>>
inline void require(bool ok, Message&& what) {
  if (!ok) throw KernelError("cuda ops: " + std::string(what()));
}

}  // namespace siesta::kernels::cuda
