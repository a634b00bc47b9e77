// SwiGLU: h = silu(gate) * up, and its backward
//   dgate = dh * up * sig(g) * (1 + g * (1 - sig(g))),  dup = dh * silu(g).
// Elementwise and memory-bound: 16-byte accesses for the aligned bulk, scalar for a tail.
#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

__device__ __forceinline__ float sigmoid(float g) { return 1.f / (1.f + __expf(-g)); }

__global__ void swiglu_forward_vec8(bf16* __restrict__ h, const bf16* __restrict__ gate,
                                    const bf16* __restrict__ up, int64_t nvec) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < nvec;
       v += int64_t(gridDim.x) * blockDim.x) {
    float g[8], u[8];
    unpack8(load8(gate + v * 8), g);
    unpack8(load8(up + v * 8), u);
#pragma unroll
    for (int i = 0; i < 8; ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
    store8(h + v * 8, pack8(g));
  }
}

__global__ void swiglu_forward_scalar(bf16* __restrict__ h, const bf16* __restrict__ gate,
                                      const bf16* __restrict__ up, int64_t begin, int64_t n) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_f(gate[i]);
    h[i] = to_bf(g * sigmoid(g) * to_f(up[i]));
  }
}

__device__ __forceinline__ void swiglu_grad(float dh, float g, float u, float& dg, float& du) {
  const float s = sigmoid(g);
  du = dh * g * s;
  dg = dh * u * s * (1.f + g * (1.f - s));
}

__global__ void swiglu_backward_vec8(bf16* __restrict__ dgate, bf16* __restrict__ dup,
                                     const bf16* __restrict__ dh, const bf16* __restrict__ gate,
                                     const bf16* __restrict__ up, int64_t nvec) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < nvec;
       v += int64_t(gridDim.x) * blockDim.x) {
    float d[8], g[8], u[8], dg[8], du[8];
    unpack8(load8(dh + v * 8), d);
    unpack8(load8(gate + v * 8), g);
    unpack8(load8(up + v * 8), u);
#pragma unroll
    for (int i = 0; i < 8; ++i) swiglu_grad(d[i], g[i], u[i], dg[i], du[i]);
    store8(dgate + v * 8, pack8(dg));
    store8(dup + v * 8, pack8(du));
  }
}

__global__ void swiglu_backward_scalar(bf16* __restrict__ dgate, bf16* __restrict__ dup,
                                       const bf16* __restrict__ dh, const bf16* __restrict__ gate,
                                       const bf16* __restrict__ up, int64_t begin, int64_t n) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float dg, du;
    swiglu_grad(to_f(dh[i]), to_f(gate[i]), to_f(up[i]), dg, du);
    dgate[i] = to_bf(dg);
    dup[i] = to_bf(du);
  }
}

}  // namespace

void CudaOps::swiglu_forward(void* h, const void* gate, const void* up, int64_t n) {
  if (n <= 0) return;
  activate();
  auto* hp = static_cast<bf16*>(h);
  auto* gp = static_cast<const bf16*>(gate);
  auto* upp = static_cast<const bf16*>(up);
  const int threads = 256;
  const int64_t cap = int64_t(sm_count_) * 16;
  int64_t done = 0;
  if (aligned16(h) && aligned16(gate) && aligned16(up) && n >= 8) {
    const int64_t nvec = n / 8;
    swiglu_forward_vec8<<<grid_for(nvec, threads, cap), threads, 0, stream_>>>(hp, gp, upp, nvec);
    SIESTA_CUDA_LAUNCH_CHECK();
    done = nvec * 8;
  }
  if (done < n) {
    swiglu_forward_scalar<<<grid_for(n - done, threads, cap), threads, 0, stream_>>>(hp, gp, upp,
                                                                                     done, n);
    SIESTA_CUDA_LAUNCH_CHECK();
  }
}

void CudaOps::swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate,
                              const void* up, int64_t n) {
  if (n <= 0) return;
  activate();
  auto* dgp = static_cast<bf16*>(dgate);
  auto* dup_ = static_cast<bf16*>(dup);
  auto* dhp = static_cast<const bf16*>(dh);
  auto* gp = static_cast<const bf16*>(gate);
  auto* upp = static_cast<const bf16*>(up);
  const int threads = 256;
  const int64_t cap = int64_t(sm_count_) * 16;
  int64_t done = 0;
  if (aligned16(dgate) && aligned16(dup) && aligned16(dh) && aligned16(gate) && aligned16(up) &&
      n >= 8) {
    const int64_t nvec = n / 8;
    swiglu_backward_vec8<<<grid_for(nvec, threads, cap), threads, 0, stream_>>>(dgp, dup_, dhp, gp,
                                                                                upp, nvec);
    SIESTA_CUDA_LAUNCH_CHECK();
    done = nvec * 8;
  }
  if (done < n) {
    swiglu_backward_scalar<<<grid_for(n - done, threads, cap), threads, 0, stream_>>>(
        dgp, dup_, dhp, gp, upp, done, n);
    SIESTA_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace siesta::kernels::cuda
