// Optimizer pieces on fp32 buffers: sum of squares (gradient-norm clipping), in-place scale,
// and the AdamW step with decoupled weight decay and bias correction.
#include <cmath>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

__global__ void sum_squares_kernel(float* __restrict__ out, const float* __restrict__ x,
                                   int64_t n) {
  __shared__ float red[32];
  float s = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, float lr,
                             float b1, float b2, float eps, float wd, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / bc1, v_hat = vi / bc2;
    const float pi = p[i];
    p[i] = pi - lr * (m_hat / (sqrtf(v_hat) + eps) + wd * pi);
  }
}

}  // namespace

void CudaOps::sum_squares(float* out_f32, const float* x_f32, int64_t n) {
  if (n <= 0) return;
  activate();
  const int threads = 512;
  sum_squares_kernel<<<grid_for(n, threads, int64_t(sm_count_) * 4), threads, 0, stream_>>>(
      out_f32, x_f32, n);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::scale(float* x_f32, int64_t n, float s) {
  if (n <= 0) return;
  activate();
  const int threads = 256;
  scale_kernel<<<grid_for(n, threads, int64_t(sm_count_) * 16), threads, 0, stream_>>>(x_f32, n,
                                                                                       s);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::adamw_step(float* param_f32, const float* grad_f32, float* m_f32, float* v_f32,
                         int64_t n, const AdamW& h) {
  if (n <= 0) return;
  require(h.step >= 1,
          [&] { return "adamw_step: step is 1-based (got " + std::to_string(h.step) + ")"; });
  activate();
  // Bias corrections in double on the host: beta^step underflows gracefully there.
  const float bc1 = float(1.0 - std::pow(double(h.beta1), double(h.step)));
  const float bc2 = float(1.0 - std::pow(double(h.beta2), double(h.step)));
  const int threads = 256;
  adamw_kernel<<<grid_for(n, threads, int64_t(sm_count_) * 16), threads, 0, stream_>>>(
      param_f32, grad_f32, m_f32, v_f32, n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, bc1,
      bc2);
  SIESTA_CUDA_LAUNCH_CHECK();
}

}  // namespace siesta::kernels::cuda
