// Token sampling on the GPU in one kernel, each logits row split over up to 256 blocks whose
// partial results the row's last block merges (a single block per row left a 150k-vocabulary
// decode step waiting on one SM):
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
#include "pdl.cuh"
#include "sample_slots.hpp"

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

// Rows whose parameters travel in the kernel's arguments (1 KiB): a decode batch needs no
// upload before its sampling kernel. Larger batches upload them from pinned memory.
constexpr int kArgRows = 64;
struct ArgRows {
  RowParams p[kArgRows];
};

__device__ __forceinline__ Acc load_acc_cg(const Acc* p) {
  return {__ldcg(&p->m), __ldcg(&p->s), __ldcg(&p->best), __ldcg(&p->idx)};
}

// A block's accumulators combined into warp 0, lane 0 (a fixed tree: the result never depends
// on which block runs when).
__device__ __forceinline__ Acc block_combine(Acc a, Acc* red, int64_t vocab) {
  a = warp_combine(a);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) red[warp] = a;
  __syncthreads();
  Acc b = empty_acc(vocab);
  if (warp == 0) {
    b = lane < kThreads / 32 ? red[lane] : empty_acc(vocab);
    b = warp_combine(b);
  }
  return b;
}

// Block (row, split) reduces its slice of the row to one Acc and publishes it; the row's last
// block to finish (a counter per row, the threadFenceReduction pattern) combines the row's
// partials in split order and writes the result. One kernel instead of two: an H200's batch-1
// step spent 4.2 + 1.6 us in the two.
__global__ void __launch_bounds__(kThreads)
    sample_kernel(RowResult* __restrict__ out, RowResult* __restrict__ host_out,
                  Acc* __restrict__ partial,
                  unsigned* __restrict__ counters, const bf16* __restrict__ logits,
                  ArgRows arg_rows, const RowParams* __restrict__ params, int64_t vocab,
                  int64_t per_split, bool vec) {
  __shared__ Acc red[kThreads / 32];
  __shared__ bool last;
  pdl_launch_dependents();  // the next step's input copies may launch (they wait for us)
  const int64_t i = blockIdx.x;
  const int splits = int(gridDim.y);
  const bf16* row = logits + i * vocab;
  const RowParams p = params ? params[i] : arg_rows.p[i];
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
  a = block_combine(a, red, vocab);
  if (threadIdx.x == 0) {
    partial[i * splits + blockIdx.y] = a;
    __threadfence();  // the partial is visible before the count says so
    last = atomicAdd(&counters[i], 1u) == unsigned(splits - 1);
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  Acc b = threadIdx.x < splits ? load_acc_cg(partial + i * splits + threadIdx.x) : empty_acc(vocab);
  __syncthreads();  // red is reused
  b = block_combine(b, red, vocab);
  if (threadIdx.x == 0) {
    // All -inf / NaN rows: fall back to token 0 rather than an out-of-range index.
    const int32_t tok = int32_t(b.idx < vocab ? b.idx : 0);
    const float lse = b.m + logf(b.s);
    const RowResult res{tok, lse, to_f(row[tok]) - lse};
    out[i] = res;       // the next step's input tokens (copy_sampled_tokens)
    host_out[i] = res;  // mapped host memory: no copy back after the kernel
    counters[i] = 0;    // ready for the next call
  }
}

// Splits per row: enough blocks to fill every SM (8 of 256 threads each: temperature rows are
// bound by the Gumbel noise's arithmetic, not by bytes), each slice at least one 16-byte load
// per thread; at most one per thread of the merging block.
int splits_for(int64_t n, int64_t vocab, int sms) {
  const int64_t by_size = (vocab + 8 * kThreads - 1) / (8 * kThreads);
  const int64_t by_fill = (8 * int64_t(sms) + n - 1) / n;
  return int(std::max<int64_t>(1, std::min<int64_t>({kThreads, by_size, by_fill})));
}

// The slot's tokens into dst: the next decode step's input.
__global__ void copy_tokens_kernel(int32_t* __restrict__ dst, const RowResult* __restrict__ res,
                                   int64_t n) {
  pdl_launch_dependents();
  pdl_wait();  // res: the sampling kernel's
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = res[i].token;
}

}  // namespace

CudaOps::SampleSlot& CudaOps::sample_slot(int slot, const char* op) {
  return sample_slot_at(sample_slots_, slot, op);
}

void CudaOps::sample_enqueue(int slot_index, const void* logits, int64_t n, int64_t vocab,
                             const SamplingRow* rows_host) {
  SampleSlot& slot = sample_slot(slot_index, "sample_enqueue");
  slot.pending = false;
  slot.n = 0;
  if (n <= 0) return;
  require(vocab > 0 && vocab < (int64_t(1) << 31),
          [&] { return "sample: vocab must be in [1, 2^31) (got " + std::to_string(vocab) + ")"; });
  require(n < (int64_t(1) << 31), "sample: n must be < 2^31");
  activate();
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
  }
  const int splits = splits_for(n, vocab, sm_count_);
  int64_t per_split = (vocab + splits - 1) / splits;
  per_split = (per_split + 7) / 8 * 8;  // slices start on 16-byte boundaries
  const bool vec = vocab % 8 == 0 && aligned16(logits);
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t partial_bytes = align(size_t(n) * size_t(splits) * sizeof(Acc));
  const size_t params_bytes = n > kArgRows ? align(size_t(n) * sizeof(RowParams)) : 0;
  char* base = static_cast<char*>(slot.scratch.get(
      partial_bytes + params_bytes + size_t(n) * sizeof(RowResult), stream_));
  auto* d_partial = reinterpret_cast<Acc*>(base);
  auto* d_params = n > kArgRows ? reinterpret_cast<RowParams*>(base + partial_bytes) : nullptr;
  auto* d_results = reinterpret_cast<RowResult*>(base + partial_bytes + params_bytes);
  // The per-row counters start at zero and every call leaves them there.
  const size_t counter_bytes = size_t(n) * sizeof(unsigned);
  const bool fresh = slot.counters.capacity() < counter_bytes;
  auto* counters = static_cast<unsigned*>(slot.counters.get(counter_bytes, stream_));
  if (fresh)
    SIESTA_CUDA_CHECK(cudaMemsetAsync(counters, 0, slot.counters.capacity(), stream_));
  // Pinned, mapped host memory: rows go up by plain DMA (above 64 rows), results are written
  // there by the kernel. A slot is enqueued again only after it was collected, so its host
  // arrays are free.
  auto* h_params = static_cast<RowParams*>(
      slot.host.get(align(size_t(n) * sizeof(RowParams)) + size_t(n) * sizeof(RowResult)));
  auto* h_results = reinterpret_cast<RowResult*>(reinterpret_cast<char*>(h_params) +
                                                 align(size_t(n) * sizeof(RowParams)));
  ArgRows arg_rows{};
  for (int64_t i = 0; i < n; ++i) {
    const SamplingRow& r = rows_host[i];
    const RowParams rp{row_key(r.seed, r.step), r.temperature > 0.f ? 1.f / r.temperature : 0.f,
                       0};
    if (n <= kArgRows) arg_rows.p[i] = rp;
    else h_params[i] = rp;
  }
  if (d_params)
    SIESTA_CUDA_CHECK(cudaMemcpyAsync(d_params, h_params, size_t(n) * sizeof(RowParams),
                                      cudaMemcpyHostToDevice, stream_));
  auto* h_results_dev = reinterpret_cast<RowResult*>(
      static_cast<char*>(slot.host.device_ptr()) + align(size_t(n) * sizeof(RowParams)));
  sample_kernel<<<dim3(unsigned(n), unsigned(splits)), kThreads, 0, stream_>>>(
      d_results, h_results_dev, d_partial, counters, static_cast<const bf16*>(logits), arg_rows,
      d_params, vocab, per_split, vec);
  SIESTA_CUDA_LAUNCH_CHECK();
  if (!slot.done) SIESTA_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  SIESTA_CUDA_CHECK(cudaEventRecord(slot.done, stream_));
  slot.logits = logits;
  slot.n = n;
  slot.vocab = vocab;
  slot.rows.assign(rows_host, rows_host + n);
  slot.d_results = d_results;
  slot.h_results = h_results;
  slot.pending = true;
}

void CudaOps::sample_collect(int slot_index, int32_t* tokens_host, float* logprob_f32_host) {
  SampleSlot& slot = sample_slot(slot_index, "sample_collect");
  if (slot.n == 0) return;
  require(slot.pending, [&] {
    return "sample_collect: slot " + std::to_string(slot_index) +
           " has nothing enqueued (sample_enqueue first; each draw is collected once)";
  });
  activate();
  SIESTA_CUDA_CHECK(cudaEventSynchronize(slot.done));  // this slot only, not later work
  slot.pending = false;
  const auto* results = static_cast<const RowResult*>(slot.h_results);
  std::vector<uint16_t> row_bf16;
  std::vector<float> row;
  for (int64_t i = 0; i < slot.n; ++i) {
    const RowResult& res = results[i];
    tokens_host[i] = res.token;
    if (logprob_f32_host) logprob_f32_host[i] = res.logprob;
    if (!slot.rows[size_t(i)].truncates(slot.vocab)) continue;
    row_bf16.resize(size_t(slot.vocab));
    row.resize(size_t(slot.vocab));
    copy_to_host(row_bf16.data(), static_cast<const bf16*>(slot.logits) + i * slot.vocab,
                 size_t(slot.vocab) * 2);
    for (int64_t j = 0; j < slot.vocab; ++j) row[size_t(j)] = bf16_to_f32(row_bf16[size_t(j)]);
    float lp = 0.f;
    cpu::sample_row(row.data(), slot.vocab, slot.rows[size_t(i)], &tokens_host[i], &lp);
    if (logprob_f32_host) logprob_f32_host[i] = lp;
  }
}

void CudaOps::copy_sampled_tokens(int slot_index, int32_t* dst, int64_t n) {
  SampleSlot& slot = sample_slot(slot_index, "copy_sampled_tokens");
  require(n >= 0 && n <= slot.n && (n == 0 || slot.d_results), [&] {
    return "copy_sampled_tokens: " + std::to_string(n) + " tokens, slot " +
           std::to_string(slot_index) + " holds " + std::to_string(slot.n);
  });
  for (int64_t i = 0; i < n; ++i)
    require(!slot.rows[size_t(i)].truncates(slot.vocab), [&] {
      return "copy_sampled_tokens: row " + std::to_string(i) +
             " uses top_k / top_p, which is drawn on the host at collect time";
    });
  if (n == 0) return;
  activate();
  const dim3 grid(unsigned(std::min<int64_t>((n + 255) / 256, 1024)));
  const auto* res = static_cast<const RowResult*>(slot.d_results);
  // PDL as for the metadata copy before it (cuda_ops.cu), and likewise not for one row.
  launch_pdl_if(hopper_ && n > 1 && step_input_pdl_enabled(), copy_tokens_kernel, grid,
                dim3(256), 0, stream_, dst, res, n);
}

}  // namespace siesta::kernels::cuda
