// Token sampling on the GPU, one block per logits row:
// - greedy (temperature 0): argmax, the lowest index on ties;
// - temperature T: Gumbel-max, argmax_j (x_j / T + G_j) with G_j = -log(-log u_j) and u_j from a
//   counter-based hash of (seed, step, j), so a request's draw depends on its seed and step
//   only, never on batch composition or launch order.
// The same block computes log-sum-exp of the unmodified row, so the reported log-prob is
// x[token] - lse (temperature 1, no truncation), as vLLM reports it.
// Rows with top_k / top_p copy only that row to the host and draw with the CPU backend's
// cpu::sample_row (inverse CDF over the kept set, one uniform per (seed, step)), so both
// backends truncate identically; sorting a 150k vocabulary per row is not worth a GPU kernel at
// decode batch sizes.
#include <cmath>
#include <string>
#include <vector>

#include "common.cuh"
#include "cpu/cpu_ops.hpp"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

constexpr int kThreads = 512;

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

__global__ void __launch_bounds__(kThreads)
    sample_kernel(RowResult* __restrict__ out, const bf16* __restrict__ logits,
                  const RowParams* __restrict__ params, int64_t vocab) {
  __shared__ float red_m[32], red_s[32], red_best[32];
  __shared__ int64_t red_idx[32];
  const int64_t i = blockIdx.x;
  const bf16* row = logits + i * vocab;
  const RowParams p = params[i];
  float m = -INFINITY, s = 0.f, best = -INFINITY;
  int64_t best_idx = vocab;  // "none yet": any real index is lower
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float x = to_f(row[j]);
    if (x > m) {
      s = s * __expf(m - x);  // m = -inf and s = 0 gives 0 * 0
      m = x;
    }
    s += __expf(x - m);
    const float score = p.inv_temp > 0.f ? x * p.inv_temp + gumbel(p.key, j) : x;
    if (score > best) {  // j increases per thread, so equal scores keep the lower index
      best = score;
      best_idx = j;
    }
  }
  // Warp then block reduction of (m, s) and (best, best_idx).
  auto combine = [](float& m1, float& s1, float& b1, int64_t& i1, float m2, float s2, float b2,
                    int64_t i2) {
    const float M = fmaxf(m1, m2);
    if (M != -INFINITY) {
      s1 = (s1 > 0.f ? s1 * __expf(m1 - M) : 0.f) + (s2 > 0.f ? s2 * __expf(m2 - M) : 0.f);
      m1 = M;
    }
    if (b2 > b1 || (b2 == b1 && i2 < i1)) {
      b1 = b2;
      i1 = i2;
    }
  };
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    const float b2 = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, best_idx, o);
    combine(m, s, best, best_idx, m2, s2, b2, i2);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
    red_best[warp] = best;
    red_idx[warp] = best_idx;
  }
  __syncthreads();
  if (warp == 0) {
    const bool have = lane < int(blockDim.x / 32);
    m = have ? red_m[lane] : -INFINITY;
    s = have ? red_s[lane] : 0.f;
    best = have ? red_best[lane] : -INFINITY;
    best_idx = have ? red_idx[lane] : vocab;
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
      const float b2 = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t i2 = __shfl_xor_sync(0xffffffffu, best_idx, o);
      combine(m, s, best, best_idx, m2, s2, b2, i2);
    }
    if (lane == 0) {
      // All -inf / NaN rows: fall back to token 0 rather than an out-of-range index.
      const int32_t tok = int32_t(best_idx < vocab ? best_idx : 0);
      const float lse = m + logf(s);
      out[i].token = tok;
      out[i].lse = lse;
      out[i].logprob = to_f(row[tok]) - lse;
    }
  }
}

bool truncates(const SamplingRow& r, int64_t vocab) {
  return r.temperature > 0.f && ((r.top_k > 0 && r.top_k < vocab) || r.top_p < 1.f);
}

}  // namespace

void CudaOps::sample(int32_t* tokens_host, float* logprob_f32_host, const void* logits, int64_t n,
                     int64_t vocab, const SamplingRow* rows_host) {
  if (n <= 0) return;
  require(vocab > 0 && vocab < (int64_t(1) << 31),
          "sample: vocab must be in [1, 2^31) (got " + std::to_string(vocab) + ")");
  require(n < (int64_t(1) << 31), "sample: n must be < 2^31");
  activate();
  std::vector<RowParams> params(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const SamplingRow& r = rows_host[i];
    require(r.temperature >= 0.f && std::isfinite(r.temperature),
            "sample: row " + std::to_string(i) + " has temperature " +
                std::to_string(r.temperature) + " (allowed: finite, >= 0)");
    require(r.top_p > 0.f && r.top_p <= 1.f, "sample: row " + std::to_string(i) + " has top_p " +
                                                  std::to_string(r.top_p) +
                                                  " (allowed: (0, 1])");
    params[size_t(i)] = {row_key(r.seed, r.step), r.temperature > 0.f ? 1.f / r.temperature : 0.f,
                         0};
  }
  const size_t params_bytes = size_t(n) * sizeof(RowParams);
  const size_t result_offset = (params_bytes + 255) / 256 * 256;
  char* base = static_cast<char*>(
      sample_scratch_.get(result_offset + size_t(n) * sizeof(RowResult), stream_));
  auto* d_params = reinterpret_cast<RowParams*>(base);
  auto* d_results = reinterpret_cast<RowResult*>(base + result_offset);
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(d_params, params.data(), params_bytes, cudaMemcpyHostToDevice,
                                    stream_));
  sample_kernel<<<unsigned(n), kThreads, 0, stream_>>>(d_results, static_cast<const bf16*>(logits),
                                                       d_params, vocab);
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
