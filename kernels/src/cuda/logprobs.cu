// Log-probabilities of chosen tokens (+ entropy) over logits rows, and their backward.
// One block per row. The forward reads each row once, keeping an online (max, sum, moment)
// state per thread:  s = sum e^(x-m),  t = sum e^(x-m) (x-m),  so that
//   lse = m + log s,   entropy = -sum p log p = log s - t / s.
// The backward needs lse before it can write, so it reads the row twice (the second read mostly
// misses L2 at large vocab) and writes it once.
// Targets outside [0, vocab) (an ignore index) give logprob 0 and a zero gradient row.
#include <cmath>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

constexpr int kThreads = 512;

struct SoftmaxState {
  float m = -INFINITY;  // running max
  float s = 0.f;        // sum e^(x-m)
  float t = 0.f;        // sum e^(x-m) (x-m)
};

__device__ __forceinline__ SoftmaxState merge(const SoftmaxState& a, const SoftmaxState& b) {
  const float M = fmaxf(a.m, b.m);
  if (M == -INFINITY) return a;
  SoftmaxState r;
  r.m = M;
  if (a.s > 0.f) {
    const float c = __expf(a.m - M);
    r.s += c * a.s;
    r.t += c * (a.t + (a.m - M) * a.s);
  }
  if (b.s > 0.f) {
    const float c = __expf(b.m - M);
    r.s += c * b.s;
    r.t += c * (b.t + (b.m - M) * b.s);
  }
  return r;
}

// Adds k values, rescaling the state once for their joint max.
template <int K, bool kMoment>
__device__ __forceinline__ void absorb(SoftmaxState& st, const float* x) {
  float mx = x[0];
#pragma unroll
  for (int i = 1; i < K; ++i) mx = fmaxf(mx, x[i]);
  if (mx > st.m) {
    if (st.s > 0.f) {
      const float c = __expf(st.m - mx);
      if constexpr (kMoment) st.t = c * (st.t + (st.m - mx) * st.s);
      st.s *= c;
    }
    st.m = mx;
  }
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const float d = x[i] - st.m;
    const float e = __expf(d);
    st.s += e;
    if constexpr (kMoment) st.t += e > 0.f ? e * d : 0.f;  // a -inf logit adds nothing
  }
}

__device__ SoftmaxState block_merge(SoftmaxState st, SoftmaxState* smem) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    SoftmaxState other;
    other.m = __shfl_xor_sync(0xffffffffu, st.m, o);
    other.s = __shfl_xor_sync(0xffffffffu, st.s, o);
    other.t = __shfl_xor_sync(0xffffffffu, st.t, o);
    st = merge(st, other);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) smem[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < int(blockDim.x / 32) ? smem[lane] : SoftmaxState{};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      SoftmaxState other;
      other.m = __shfl_xor_sync(0xffffffffu, st.m, o);
      other.s = __shfl_xor_sync(0xffffffffu, st.s, o);
      other.t = __shfl_xor_sync(0xffffffffu, st.t, o);
      st = merge(st, other);
    }
    if (lane == 0) smem[0] = st;
  }
  __syncthreads();
  return smem[0];
}

template <bool kVec, bool kMoment>
__device__ SoftmaxState row_state(const bf16* __restrict__ row, int64_t vocab) {
  SoftmaxState st;
  if constexpr (kVec) {
    for (int64_t j = threadIdx.x * 8; j < vocab; j += int64_t(blockDim.x) * 8) {
      float x[8];
      unpack8(load8(row + j), x);
      absorb<8, kMoment>(st, x);
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      const float x = to_f(row[j]);
      absorb<1, kMoment>(st, &x);
    }
  }
  return st;
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    token_logprobs_kernel(float* __restrict__ logprob, float* __restrict__ entropy,
                          const bf16* __restrict__ logits, const int32_t* __restrict__ targets,
                          int64_t vocab) {
  __shared__ SoftmaxState smem[32];
  const int64_t i = blockIdx.x;
  const bf16* row = logits + i * vocab;
  SoftmaxState st = entropy ? row_state<kVec, true>(row, vocab) : row_state<kVec, false>(row, vocab);
  st = block_merge(st, smem);
  if (threadIdx.x == 0) {
    const float log_s = logf(st.s);
    const int32_t tg = targets[i];
    logprob[i] = (tg >= 0 && tg < vocab) ? to_f(row[tg]) - (st.m + log_s) : 0.f;
    if (entropy) entropy[i] = log_s - st.t / st.s;
  }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    token_logprobs_backward_kernel(bf16* __restrict__ dlogits, const bf16* __restrict__ logits,
                                   const int32_t* __restrict__ targets,
                                   const float* __restrict__ dlogprob, int64_t vocab) {
  __shared__ SoftmaxState smem[32];
  const int64_t i = blockIdx.x;
  const bf16* row = logits + i * vocab;
  bf16* drow = dlogits + i * vocab;
  const int32_t tg = targets[i];
  const bool valid = tg >= 0 && tg < vocab;
  const float g = valid ? dlogprob[i] : 0.f;
  SoftmaxState st = row_state<kVec, false>(row, vocab);
  st = block_merge(st, smem);
  const float lse = st.m + logf(st.s);
  if constexpr (kVec) {
    for (int64_t j = threadIdx.x * 8; j < vocab; j += int64_t(blockDim.x) * 8) {
      float x[8];
      unpack8(load8(row + j), x);
#pragma unroll
      for (int k = 0; k < 8; ++k) x[k] = g * (float(j + k == tg) - __expf(x[k] - lse));
      store8(drow + j, pack8(x));
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
      drow[j] = to_bf(g * (float(j == tg) - __expf(to_f(row[j]) - lse)));
  }
}

}  // namespace

void CudaOps::token_logprobs(float* logprob_f32, float* entropy_f32, const void* logits,
                             const int32_t* targets, int64_t n, int64_t vocab) {
  if (n <= 0) return;
  require(vocab > 0, "token_logprobs: vocab must be > 0");
  require(n < (int64_t(1) << 31), "token_logprobs: n must be < 2^31");
  activate();
  auto* lp = static_cast<const bf16*>(logits);
  if (vocab % 8 == 0 && aligned16(logits))
    token_logprobs_kernel<true><<<unsigned(n), kThreads, 0, stream_>>>(logprob_f32, entropy_f32,
                                                                       lp, targets, vocab);
  else
    token_logprobs_kernel<false><<<unsigned(n), kThreads, 0, stream_>>>(logprob_f32, entropy_f32,
                                                                        lp, targets, vocab);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::token_logprobs_backward(void* dlogits, const void* logits, const int32_t* targets,
                                      const float* dlogprob_f32, int64_t n, int64_t vocab) {
  if (n <= 0) return;
  require(vocab > 0, "token_logprobs_backward: vocab must be > 0");
  require(n < (int64_t(1) << 31), "token_logprobs_backward: n must be < 2^31");
  activate();
  auto* d = static_cast<bf16*>(dlogits);
  auto* lp = static_cast<const bf16*>(logits);
  if (vocab % 8 == 0 && aligned16(logits) && aligned16(dlogits))
    token_logprobs_backward_kernel<true><<<unsigned(n), kThreads, 0, stream_>>>(
        d, lp, targets, dlogprob_f32, vocab);
  else
    token_logprobs_backward_kernel<false><<<unsigned(n), kThreads, 0, stream_>>>(
        d, lp, targets, dlogprob_f32, vocab);
  SIESTA_CUDA_LAUNCH_CHECK();
}

}  // namespace siesta::kernels::cuda
