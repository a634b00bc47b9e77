// RMSNorm forward and backward, fused: one warp per row, fp32 statistics.
//   out = x * rstd * w,  rstd = 1 / sqrt(mean(x^2) + eps)
//   dx += rstd * w * g - x * rstd^3 * sum(g * w * x) / d
//   dw += sum over rows of g * x * rstd
// The backward keeps a per-block dw partial in shared memory and adds it to the fp32 gradient
// once per block, so global atomics scale with the number of blocks, not rows.
#include <algorithm>
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

template <bool kVec>
__global__ void rmsnorm_forward_kernel(bf16* __restrict__ out, float* __restrict__ rstd_out,
                                       const bf16* __restrict__ x, const bf16* __restrict__ w,
                                       int64_t n, int64_t d, float eps) {
  // Launched with PDL on Hopper, like the decode kernels around a step's final norm; it reads
  // and writes nothing before the wait. (Alone this measured neutral on an H200; it is part of
  // the configuration measured in docs/results/2026-12-03-h200-decode-residency.)
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= n) return;
  const bf16* xr = x + row * d;
  bf16* orow = out + row * d;
  float ss = 0.f;
  if constexpr (kVec) {
    for (int64_t j = lane * 8; j < d; j += 256) {
      float a[8];
      unpack8(load8(xr + j), a);
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += a[i] * a[i];
    }
  } else {
    for (int64_t j = lane; j < d; j += 32) {
      const float a = to_f(xr[j]);
      ss += a * a;
    }
  }
  ss = warp_sum(ss);
  const float r = rsqrtf(ss / float(d) + eps);
  if (rstd_out && lane == 0) rstd_out[row] = r;
  if constexpr (kVec) {
    for (int64_t j = lane * 8; j < d; j += 256) {
      float a[8], b[8];
      unpack8(load8(xr + j), a);
      unpack8(load8(w + j), b);
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = a[i] * r * b[i];
      store8(orow + j, pack8(a));
    }
  } else {
    for (int64_t j = lane; j < d; j += 32) orow[j] = to_bf(to_f(xr[j]) * r * to_f(w[j]));
  }
}

template <bool kVec>
__global__ void rmsnorm_backward_kernel(bf16* __restrict__ dx, float* __restrict__ dw,
                                        const bf16* __restrict__ dout, const bf16* __restrict__ x,
                                        const bf16* __restrict__ w, const float* __restrict__ rstd,
                                        int64_t n, int64_t d) {
  extern __shared__ float dw_part[];  // [d]
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dw_part[j] = 0.f;
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const float inv_d = 1.f / float(d);
  for (int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32; row < n;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const bf16* xr = x + row * d;
    const bf16* gr = dout + row * d;
    bf16* dxr = dx + row * d;
    const float r = rstd[row];
    float dot = 0.f;
    if constexpr (kVec) {
      for (int64_t j = lane * 8; j < d; j += 256) {
        float a[8], g[8], b[8];
        unpack8(load8(xr + j), a);
        unpack8(load8(gr + j), g);
        unpack8(load8(w + j), b);
#pragma unroll
        for (int i = 0; i < 8; ++i) dot += g[i] * b[i] * a[i];
      }
    } else {
      for (int64_t j = lane; j < d; j += 32) dot += to_f(gr[j]) * to_f(w[j]) * to_f(xr[j]);
    }
    dot = warp_sum(dot);
    const float c = r * r * r * dot * inv_d;
    if constexpr (kVec) {
      for (int64_t j = lane * 8; j < d; j += 256) {
        float a[8], g[8], b[8], o[8];
        unpack8(load8(xr + j), a);
        unpack8(load8(gr + j), g);
        unpack8(load8(w + j), b);
        unpack8(load8(dxr + j), o);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          o[i] += r * b[i] * g[i] - a[i] * c;
          atomicAdd(&dw_part[j + i], g[i] * a[i] * r);
        }
        store8(dxr + j, pack8(o));
      }
    } else {
      for (int64_t j = lane; j < d; j += 32) {
        const float a = to_f(xr[j]), g = to_f(gr[j]), b = to_f(w[j]);
        dxr[j] = to_bf(to_f(dxr[j]) + r * b * g - a * c);
        atomicAdd(&dw_part[j], g * a * r);
      }
    }
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) atomicAdd(dw + j, dw_part[j]);
}

}  // namespace

void CudaOps::rmsnorm_forward(void* out, float* rstd_f32, const void* x, const void* w, int64_t n,
                              int64_t d, float eps) {
  if (n <= 0 || d <= 0) return;
  activate();
  const unsigned grid = unsigned((n + kRowsPerBlock - 1) / kRowsPerBlock);
  auto* o = static_cast<bf16*>(out);
  auto* xp = static_cast<const bf16*>(x);
  auto* wp = static_cast<const bf16*>(w);
  const bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
  auto kernel = vec ? rmsnorm_forward_kernel<true> : rmsnorm_forward_kernel<false>;
  launch_pdl_if(hopper_, kernel, dim3(grid), dim3(32 * kRowsPerBlock), 0, stream_, o, rstd_f32,
                xp, wp, n, d, eps);
}

void CudaOps::rmsnorm_backward(void* dx, float* dw_f32, const void* dout, const void* x,
                               const void* w, const float* rstd_f32, int64_t n, int64_t d) {
  if (n <= 0 || d <= 0) return;
  activate();
  const size_t smem = size_t(d) * sizeof(float);
  require(smem <= max_smem_optin_, [&] {
    return "rmsnorm_backward: d = " + std::to_string(d) + " needs " + std::to_string(smem) +
           " bytes of shared memory; this GPU allows " + std::to_string(max_smem_optin_);
  });
  const int64_t row_blocks = (n + kRowsPerBlock - 1) / kRowsPerBlock;
  const unsigned grid = unsigned(std::min<int64_t>(row_blocks, int64_t(sm_count_) * 2));
  const bool vec = d % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
  auto launch = [&](auto kernel) {
    if (smem > 48 * 1024)
      SIESTA_CUDA_CHECK(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    kernel<<<grid, 32 * kRowsPerBlock, smem, stream_>>>(
        static_cast<bf16*>(dx), dw_f32, static_cast<const bf16*>(dout),
        static_cast<const bf16*>(x), static_cast<const bf16*>(w), rstd_f32, n, d);
    SIESTA_CUDA_LAUNCH_CHECK();
  };
  if (vec)
    launch(rmsnorm_backward_kernel<true>);
  else
    launch(rmsnorm_backward_kernel<false>);
}

}  // namespace siesta::kernels::cuda
