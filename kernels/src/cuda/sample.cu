// Token sampling on the GPU, each logits row split over up to 32 blocks whose partial results
// one warp per row merges (a single block per row left a 150k-vocabulary decode step waiting
// on one SM):
// - greedy (temperature 0): argmax, the lowest index on ties;
// - temperature T: Gumbel-max, argmax_j (x_j / T + G_j) with G_j = -log(-log u_j) and u_j from a
//   counter-based hash of (seed, step, j), so a request's draw depends on its seed and step
//   only, never on batch composition or launch order.
// The same pass computes log-sum-exp of the unmodified row, so the reported log-prob is
// x[token] - lse (temperature 1, no truncation), as vLLM reports it.
// Rows with top_k / top_p copy only that row to the host and draw with the CPU backend's
// cpu::sample_row (inverse CDF over the kept set, one uniform per (seed, step)), so both
// backends truncate identically; sorting a 150k vocabulary per row is not worth a GPU kernel at
// decode batch sizes.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.cuh"
#include "cpu/cpu_ops.hpp"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__host__ __device__ inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Per-row key; per-element uniform in (0, 1) from the top 24 bits.
__host__ __device__ inline uint64_t row_key(uint64_t seed, uint64_t step) {
  return splitmix64(splitmix64(seed) ^ step);
}
__host__ __device__ inline float gumbel(uint64_t key, int64_t j) {
  const uint64_t h = splitmix64(key ^ uint64_t(j));
  const float u = (float(h >> 40) + 0.5f) * (1.f / 16777216.f);
  return -logf(-logf(u));
}

struct RowParams {
  uint64_t key;
  float inv_temp;  // 0: greedy
  int32_t pad;
};
struct RowResult {
  int32_t token;
  float lse;
  float logprob;  // x[token] - lse
};

// Running (max, sum of exp) of the row and the best (score, index) so far.
struct Acc {
  float m, s, best;
  int64_t idx;
};
// Nothing seen yet; idx = vocab so that any real index is lower.
__device__ __forceinline__ Acc empty_acc(int64_t vocab) { return {-INFINITY, 0.f, -INFINITY, vocab}; }

__device__ __forceinline__ void combine(Acc& a, const Acc& b) {
  const float M = fmaxf(a.m, b.m);
  if (M != -INFINITY) {
    a.s = (a.s > 0.f ? a.s * __expf(a.m - M) : 0.f) + (b.s > 0.f ? b.s * __expf(b.m - M) : 0.f);
    a.m = M;
  }
  if (b.best > a.best || (b.best == a.best && b.idx < a.idx)) {
    a.best = b.best;
    a.idx = b.idx;
  }
}

__device__ __forceinline__ Acc warp_combine(Acc a) {
  for (int o = 16; o > 0; o >>= 1) {
    Acc b;
    b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
    b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
    b.best = __shfl_xor_sync(0xffffffffu, a.best, o);
    b.idx = __shfl_xor_sync(0xffffffffu, a.idx, o);
    combine(a, b);
  }
  return a;
}

// Adds the values x[0..n) at indices j0.. to a thread's accumulator: one rescale per group.
template <int N>
__device__ __forceinline__ void add_values(Acc& a, const float (&x)[N], int64_t j0,
                                           const RowParams& p) {
  float mx = x[0];
#pragma unroll
  for (int i = 1; i < N; ++i) mx = fmaxf(mx, x[i]);
  if (mx > a.m) {
    a.s = a.s > 0.f ? a.s * __expf(a.m - mx) : 0.f;
    a.m = mx;
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    a.s += __expf(x[i] - a.m);
    const float score = p.inv_temp > 0.f ? x[i] * p.inv_temp + gumbel(p.key, j0 + i) : x[i];
    if (score > a.best) {  // indices increase per thread: equal scores keep the lower one
      a.best = score;
      a.idx = j0 + i;
    }
  }
}

// Stage 1: block (row, split) reduces its slice of the row to one Acc.
__global__ void __launch_bounds__(kThreads)
    sample_partial_kernel(Acc* __restrict__ partial, const bf16* __restrict__ logits,
                          const RowParams* __restrict__ params, int64_t vocab, int64_t per_split,
                          bool vec) {
  __shared__ Acc red[kThreads / 32];
  const int64_t i = blockIdx.x;
  const bf16* row = logits + i * vocab;
  const RowParams p = params[i];
  const int64_t lo = int64_t(blockIdx.y) * per_split, hi = min(vocab, lo + per_split);
  Acc a = empty_acc(vocab);
  // 16-byte loads up to vhi where the row and the slice start aligned (vec); single values
  // after it (the tail of the last slice, or all of it).
  const int64_t vhi = vec ? lo + (hi - lo) / 8 * 8 : lo;
  for (int64_t j = lo + int64_t(threadIdx.x) * 8; j < vhi; j += int64_t(kThreads) * 8) {
    float x[8];
    unpack8(load8(row + j), x);
    add_values(a, x, j, p);
  }
  for (int64_t j = vhi + threadIdx.x; j < hi; j += kThreads) {
    const float x[1] = {to_f(row[j])};
    add_values(a, x, j, p);
  }
  a = warp_combine(a);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) red[warp] = a;
  __syncthreads();
  if (warp == 0) {
    Acc b = lane < kThreads / 32 ? red[lane] : empty_acc(vocab);
    b = warp_combine(b);
    if (lane == 0) partial[i * gridDim.y + blockIdx.y] = b;
  }
}

// Stage 2: one warp per row merges the row's splits (at most 32).
__global__ void sample_finish_kernel(RowResult* __restrict__ out, const Acc* __restrict__ partial,
                                     const bf16* __restrict__ logits, int64_t vocab, int splits) {
  const int64_t i = blockIdx.x;
  const int lane = threadIdx.x;
  Acc a = lane < splits ? partial[i * splits + lane] : empty_acc(vocab);
  a = warp_combine(a);
  if (lane == 0) {
    // All -inf / NaN rows: fall back to token 0 rather than an out-of-range index.
    const int32_t tok = int32_t(a.idx < vocab ? a.idx : 0);
    const float lse = a.m + logf(a.s);
    out[i].token = tok;
    out[i].lse = lse;
    out[i].logprob = to_f(logits[i * vocab + tok]) - lse;
  }
}

// Splits per row: enough blocks to fill the GPU at decode batch sizes, each slice long enough
// to amortise its partial; at most 32 (one warp merges them).
int splits_for(int64_t n, int64_t vocab, int sms) {
  const int64_t by_size = (vocab + 4095) / 4096;
  const int64_t by_fill = (2 * int64_t(sms) + n - 1) / n;
  return int(std::max<int64_t>(1, std::min<int64_t>({32, by_size, by_fill})));
}

bool truncates(const SamplingRow& r, int64_t vocab) {
  return r.temperature > 0.f && ((r.top_k > 0 && r.top_k < vocab) || r.top_p < 1.f);
}

}  // namespace

void CudaOps::sample(int32_t* tokens_host, float* logprob_f32_host, const void* logits, int64_t n,
                     int64_t vocab, const SamplingRow* rows_host) {
  if (n <= 0) return;
  require(vocab > 0 && vocab < (int64_t(1) << 31),
          [&] { return "sample: vocab must be in [1, 2^31) (got " + std::to_string(vocab) + ")"; });
  require(n < (int64_t(1) << 31), "sample: n must be < 2^31");
  activate();
  std::vector<RowParams> params(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const SamplingRow& r = rows_host[i];
    require(r.temperature >= 0.f && std::isfinite(r.temperature), [&] {
      return "sample: row " + std::to_string(i) + " has temperature " +
             std::to_string(r.temperature) + " (allowed: finite, >= 0)";
    });
    require(r.top_p > 0.f && r.top_p <= 1.f, [&] {
      return "sample: row " + std::to_string(i) + " has top_p " + std::to_string(r.top_p) +
             " (allowed: (0, 1])";
    });
    params[size_t(i)] = {row_key(r.seed, r.step), r.temperature > 0.f ? 1.f / r.temperature : 0.f,
                         0};
  }
  const int splits = splits_for(n, vocab, sm_count_);
  int64_t per_split = (vocab + splits - 1) / splits;
  per_split = (per_split + 7) / 8 * 8;  // slices start on 16-byte boundaries
  const bool vec = vocab % 8 == 0 && aligned16(logits);
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t params_bytes = align(size_t(n) * sizeof(RowParams));
  const size_t partial_bytes = align(size_t(n) * size_t(splits) * sizeof(Acc));
  char* base = static_cast<char*>(sample_scratch_.get(
      params_bytes + partial_bytes + size_t(n) * sizeof(RowResult), stream_));
  auto* d_params = reinterpret_cast<RowParams*>(base);
  auto* d_partial = reinterpret_cast<Acc*>(base + params_bytes);
  auto* d_results = reinterpret_cast<RowResult*>(base + params_bytes + partial_bytes);
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(d_params, params.data(), size_t(n) * sizeof(RowParams),
                                    cudaMemcpyHostToDevice, stream_));
  sample_partial_kernel<<<dim3(unsigned(n), unsigned(splits)), kThreads, 0, stream_>>>(
      d_partial, static_cast<const bf16*>(logits), d_params, vocab, per_split, vec);
  SIESTA_CUDA_LAUNCH_CHECK();
  sample_finish_kernel<<<unsigned(n), 32, 0, stream_>>>(
      d_results, d_partial, static_cast<const bf16*>(logits), vocab, splits);
  SIESTA_CUDA_LAUNCH_CHECK();
  std::vector<RowResult> results(static_cast<size_t>(n));
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(results.data(), d_results, size_t(n) * sizeof(RowResult),
                                    cudaMemcpyDeviceToHost, stream_));
  SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream_));

  std::vector<uint16_t> row_bf16;
  std::vector<float> row;
  for (int64_t i = 0; i < n; ++i) {
    const RowResult& res = results[size_t(i)];
    tokens_host[i] = res.token;
    logprob_f32_host[i] = res.logprob;
    if (!truncates(rows_host[i], vocab)) continue;
    row_bf16.resize(size_t(vocab));
    row.resize(size_t(vocab));
    copy_to_host(row_bf16.data(), static_cast<const bf16*>(logits) + i * vocab, size_t(vocab) * 2);
    for (int64_t j = 0; j < vocab; ++j) row[size_t(j)] = bf16_to_f32(row_bf16[size_t(j)]);
    cpu::sample_row(row.data(), vocab, rows_host[i], &tokens_host[i], &logprob_f32_host[i]);
  }
}

}  // namespace siesta::kernels::cuda
