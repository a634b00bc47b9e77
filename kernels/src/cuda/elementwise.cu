// Bias add and its backward (column sums), and the residual add x += y. Memory-bound: 16-byte
// accesses where sizes and alignment allow, a scalar path otherwise.
#include <algorithm>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

__global__ void add_bias_vec8(bf16* __restrict__ x, const bf16* __restrict__ bias, int64_t nvec,
                              int64_t d) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < nvec;
       v += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = (v * 8) % d;
    float a[8], b[8];
    unpack8(load8(x + v * 8), a);
    unpack8(load8(bias + col), b);
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] += b[i];
    store8(x + v * 8, pack8(a));
  }
}

__global__ void add_bias_scalar(bf16* __restrict__ x, const bf16* __restrict__ bias, int64_t total,
                                int64_t d) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = to_bf(to_f(x[i]) + to_f(bias[i % d]));
}

// Column sums: blockDim (32, 16); each block sums rows [y0, y1) of 32 columns and adds its
// partial sum into dbias with one atomic per column.
__global__ void bias_backward_kernel(float* __restrict__ dbias, const bf16* __restrict__ dy,
                                     int64_t n, int64_t d, int64_t rows_per_block) {
  __shared__ float part[16][33];
  const int64_t col = blockIdx.x * 32 + threadIdx.x;
  const int64_t y0 = blockIdx.y * rows_per_block, y1 = min(n, y0 + rows_per_block);
  float s = 0.f;
  if (col < d)
    for (int64_t r = y0 + threadIdx.y; r < y1; r += 16) s += to_f(dy[r * d + col]);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < 16; ++i) t += part[i][threadIdx.x];
    atomicAdd(dbias + col, t);
  }
}

__global__ void add_vec8(bf16* __restrict__ x, const bf16* __restrict__ y, int64_t nvec) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < nvec;
       v += int64_t(gridDim.x) * blockDim.x) {
    float a[8], b[8];
    unpack8(load8(x + v * 8), a);
    unpack8(load8(y + v * 8), b);
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] += b[i];
    store8(x + v * 8, pack8(a));
  }
}

__global__ void add_scalar(bf16* __restrict__ x, const bf16* __restrict__ y, int64_t begin,
                           int64_t n) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = to_bf(to_f(x[i]) + to_f(y[i]));
}

}  // namespace

void CudaOps::add_bias(void* x, const void* bias, int64_t n, int64_t d) {
  if (n <= 0 || d <= 0) return;
  activate();
  auto* xp = static_cast<bf16*>(x);
  auto* bp = static_cast<const bf16*>(bias);
  const int threads = 256;
  const int64_t cap = int64_t(sm_count_) * 16;
  if (d % 8 == 0 && aligned16(x) && aligned16(bias)) {
    const int64_t nvec = n * d / 8;
    add_bias_vec8<<<grid_for(nvec, threads, cap), threads, 0, stream_>>>(xp, bp, nvec, d);
  } else {
    add_bias_scalar<<<grid_for(n * d, threads, cap), threads, 0, stream_>>>(xp, bp, n * d, d);
  }
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::bias_backward(float* dbias_f32, const void* dy, int64_t n, int64_t d) {
  if (n <= 0 || d <= 0) return;
  activate();
  const int64_t col_blocks = (d + 31) / 32;
  // Enough row splits to give every SM a few blocks, but at least 64 rows each.
  int64_t splits = std::max<int64_t>(1, (int64_t(sm_count_) * 4 + col_blocks - 1) / col_blocks);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, n / 64));
  splits = std::min<int64_t>(splits, 65535);
  const int64_t rows_per_block = (n + splits - 1) / splits;
  dim3 grid(unsigned(col_blocks), unsigned((n + rows_per_block - 1) / rows_per_block));
  bias_backward_kernel<<<grid, dim3(32, 16), 0, stream_>>>(dbias_f32, static_cast<const bf16*>(dy),
                                                           n, d, rows_per_block);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::add_inplace(void* x, const void* y, int64_t n) {
  if (n <= 0) return;
  activate();
  auto* xp = static_cast<bf16*>(x);
  auto* yp = static_cast<const bf16*>(y);
  const int threads = 256;
  const int64_t cap = int64_t(sm_count_) * 16;
  int64_t done = 0;
  if (aligned16(x) && aligned16(y)) {
    const int64_t nvec = n / 8;
    if (nvec > 0) {
      add_vec8<<<grid_for(nvec, threads, cap), threads, 0, stream_>>>(xp, yp, nvec);
      SIESTA_CUDA_LAUNCH_CHECK();
    }
    done = nvec * 8;
  }
  if (done < n) {
    add_scalar<<<grid_for(n - done, threads, cap), threads, 0, stream_>>>(xp, yp, done, n);
    SIESTA_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace siesta::kernels::cuda
