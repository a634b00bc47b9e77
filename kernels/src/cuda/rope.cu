// Rotary embeddings in place, half-split pairing (j, j + head_dim/2) as HF Llama/Qwen2 do:
//   x1' = x1 cos - x2 sin,  x2' = x2 cos + x1 sin   (inverse: sin -> -sin)
// One thread per rotated pair; cos/sin come from the fp32 [max_pos, head_dim] table.
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

__global__ void rope_kernel(bf16* __restrict__ x, const int32_t* __restrict__ positions,
                            int64_t total_pairs, int n_heads, int head_dim,
                            const float* __restrict__ cos_sin, float sin_sign) {
  const int half = head_dim / 2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total_pairs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int j = int(i % half);
    const int64_t th = i / half;  // token * n_heads + head
    const int64_t t = th / n_heads;
    const float* row = cos_sin + int64_t(positions[t]) * head_dim;
    const float c = row[j], s = sin_sign * row[half + j];
    bf16* p = x + th * head_dim;
    float o1, o2;
    rope_pair(to_f(p[j]), to_f(p[j + half]), c, s, o1, o2);
    p[j] = to_bf(o1);
    p[j + half] = to_bf(o2);
  }
}

}  // namespace

void CudaOps::rope(void* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
                   const float* cos_sin_f32, bool inverse) {
  require(head_dim > 0 && head_dim % 2 == 0, [&] {
    return "rope: head_dim must be even and > 0 (got " + std::to_string(head_dim) + ")";
  });
  if (n_tokens <= 0 || n_heads <= 0) return;
  activate();
  const int64_t total = n_tokens * n_heads * (head_dim / 2);
  const int threads = 256;
  rope_kernel<<<grid_for(total, threads, int64_t(sm_count_) * 16), threads, 0, stream_>>>(
      static_cast<bf16*>(x), positions, total, n_heads, head_dim, cos_sin_f32,
      inverse ? -1.f : 1.f);
  SIESTA_CUDA_LAUNCH_CHECK();
}

}  // namespace siesta::kernels::cuda
