// Embedding lookup (row gather) and its backward (row scatter-add into an fp32 gradient; tokens
// repeat, so the adds are atomic).
#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

// One block per output row.
template <bool kVec>
__global__ void embedding_forward_kernel(bf16* __restrict__ out, const bf16* __restrict__ table,
                                         const int32_t* __restrict__ tokens, int64_t d) {
  const int64_t row = blockIdx.x;
  const bf16* src = table + int64_t(tokens[row]) * d;
  bf16* dst = out + row * d;
  if constexpr (kVec) {
    for (int64_t j = threadIdx.x * 8; j < d; j += int64_t(blockDim.x) * 8)
      store8(dst + j, load8(src + j));
  } else {
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dst[j] = src[j];
  }
}

__global__ void embedding_backward_kernel(float* __restrict__ dtable, const bf16* __restrict__ dout,
                                          const int32_t* __restrict__ tokens, int64_t d) {
  const int64_t row = blockIdx.x;
  float* dst = dtable + int64_t(tokens[row]) * d;
  const bf16* src = dout + row * d;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) atomicAdd(dst + j, to_f(src[j]));
}

}  // namespace

void CudaOps::embedding_forward(void* out, const void* table, const int32_t* tokens, int64_t n,
                                int64_t d) {
  if (n <= 0 || d <= 0) return;
  activate();
  require(n < (int64_t(1) << 31), "embedding_forward: n must be < 2^31");
  auto* o = static_cast<bf16*>(out);
  auto* t = static_cast<const bf16*>(table);
  if (d % 8 == 0 && aligned16(out) && aligned16(table))
    embedding_forward_kernel<true><<<unsigned(n), 128, 0, stream_>>>(o, t, tokens, d);
  else
    embedding_forward_kernel<false><<<unsigned(n), 256, 0, stream_>>>(o, t, tokens, d);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::embedding_backward(float* dtable_f32, const void* dout, const int32_t* tokens,
                                 int64_t n, int64_t d) {
  if (n <= 0 || d <= 0) return;
  activate();
  require(n < (int64_t(1) << 31), "embedding_backward: n must be < 2^31");
  embedding_backward_kernel<<<unsigned(n), 256, 0, stream_>>>(
      dtable_f32, static_cast<const bf16*>(dout), tokens, d);
  SIESTA_CUDA_LAUNCH_CHECK();
}

}  // namespace siesta::kernels::cuda
