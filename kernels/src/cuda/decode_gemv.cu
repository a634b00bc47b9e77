// Decode-sized matrix products: y[m, :] = x[m, :] · W^T for m <= 8 tokens, where the whole
// cost is reading W once. cuBLAS picks GEMM tiles for these shapes that leave most of HBM idle
// and needs separate kernels for norm, bias, rope, cache write and SwiGLU around it; here one
// kernel streams W and does the rest in its prologue and epilogue:
//   gemv_kernel          y = x W^T (+ y)           (Ops::gemm for few rows: o_proj, down)
//   qkv_kernel           rmsnorm -> q|k|v -> bias -> rope -> q out, K/V into the paged cache
//   gate_up_kernel       rmsnorm -> gate|up -> SwiGLU
// Work comes in "units" of two weight rows (two, so that a rope pair, or a gate row and its up
// row, meet in one place). A block (one per SM at most) takes a contiguous range of units in
// "items" of up to 8 units and one k-segment. One producer thread streams the items into a
// ring of shared-memory slots with bulk copies (TMA, bulk_copy.cuh), rows that lie back to back
// in one copy; the 8 consumer warps all work on each item (warp w on unit w / split, slice
// w % split of its chunks) and hand the slot back.
// Every kernel is launched with PDL (pdl.cuh): the producer streams weights (which no kernel of
// a step writes) and the consumers load step metadata (positions, cache slots, rope rows, bias)
// while the kernel before is still running; only what that kernel wrote (x, the residual) is
// read after pdl_wait. One block per SM leaves room for the next kernel beside it.
// Measured on an H200 (bench_ops, docs/results/2026-12-02-h200-decode-stream): cp.async from
// all warps instead of TMA was no faster; a grid-stride order of groups was slower; more slots
// did not help, larger items did. The LM head's size goes to cuBLAS (kGemvMaxBytes), which
// streams it at ~93% of HBM where this kernel reaches ~66%.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bulk_copy.cuh"
#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kMaxTokens = 8;
constexpr int kConsumerWarps = 8;
constexpr int kConsumers = kConsumerWarps * 32;
constexpr int kThreads = kConsumers + 32;    // + the producer warp
constexpr int kMaxSlots = 16;
constexpr size_t kSlotBytes = 32 * 1024;     // one item: 2 x units x segment x bf16, at most
constexpr size_t kRingBytes = 96 * 1024;     // in flight per block; two kernels fit on an SM
constexpr size_t kTokenBytes = 48 * 1024;    // staged tokens, M x k bf16
constexpr int kRegChunks = 4;                // per lane, x in registers for one token

__device__ __forceinline__ float round_bf(float x) { return to_f(to_bf(x)); }

__device__ __forceinline__ void consumers_sync() {
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");
}

// How a launch splits its work and its shared memory, computed on the host (make_plan).
struct Plan {
  int units;
  int per_item, split;   // units per item (1, 2, 4, 8); warps per unit = 8 / per_item
  int segs, seg_len;     // k in segs segments of seg_len (the last may be shorter)
  int slots;             // ring slots
  int norm_off, ring_off, scratch_off;  // byte offsets into dynamic shared memory
};

// xs[m, :] = x[m, :] (no norm) or rmsnorm(x[m, :]) * norm_w rounded to bf16 for m < n; zeros
// for n <= m < M (kernels are compiled for M tokens and called with n). The norm statistics are
// summed in a fixed order (no atomics), so a step's output never depends on scheduling. Called
// by the consumer warps; nws holds norm_w, copied there before the wait.
template <int M>
__device__ void stage_tokens(bf16* xs, const bf16* nws, const bf16* __restrict__ x, int64_t ldx,
                             int n, int k, bool norm, float eps) {
  __shared__ float ss_warp[kConsumerWarps][M];
  const int chunks = k / 8, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ss[m] = 0.f;
  for (int idx = threadIdx.x; idx < M * chunks; idx += kConsumers) {
    const int m = idx / chunks, c = idx % chunks;
    Bf16x8 v{};
    if (m < n) {
      v = load8(x + m * ldx + c * 8);
      if (norm) {
        float a[8], part = 0.f;
        unpack8(v, a);
#pragma unroll
        for (int i = 0; i < 8; ++i) part += a[i] * a[i];
#pragma unroll
        for (int mm = 0; mm < M; ++mm)
          if (mm == m) ss[mm] += part;
      }
    }
    store8(xs + m * k + c * 8, v);
  }
  if (norm) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float w = warp_sum(ss[m]);
      if (lane == 0) ss_warp[warp][m] = w;
    }
  }
  consumers_sync();
  if (!norm) return;
  for (int idx = threadIdx.x; idx < n * chunks; idx += kConsumers) {
    const int m = idx / chunks, c = idx % chunks;
    float t = 0.f;
    for (int w = 0; w < kConsumerWarps; ++w) t += ss_warp[w][m];
    const float r = rsqrtf(t / float(k) + eps);
    float a[8], w[8];
    unpack8(load8(xs + m * k + c * 8), a);
    unpack8(load8(nws + c * 8), w);
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] = a[i] * r * w[i];
    store8(xs + m * k + c * 8, pack8(a));
  }
  consumers_sync();
}

// a[m] += row_a[c0 ..] · xs[m, c0 ..], b[m] likewise, over chunks c = first, first + step, ...
// of a segment in shared memory.
template <int M>
__device__ __forceinline__ void dot_segment(float (&a)[M], float (&b)[M], const bf16* ra,
                                            const bf16* rb, const bf16* xs, int k, int c0,
                                            int chunks, int first, int step) {
#pragma unroll 2
  for (int c = first; c < chunks; c += step) {
    float fa[8], fb[8];
    unpack8(load8(ra + c * 8), fa);
    unpack8(load8(rb + c * 8), fb);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float xf[8];
      unpack8(load8(xs + m * k + c0 + c * 8), xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        a[m] += fa[j] * xf[j];
        b[m] += fb[j] * xf[j];
      }
    }
  }
}

// The same for one token whose chunks (first + i * step) are in registers.
__device__ __forceinline__ void dot_regs(float& a, float& b, const bf16* ra, const bf16* rb,
                                         const Bf16x8 (&xr)[kRegChunks], int chunks, int first,
                                         int step) {
#pragma unroll
  for (int i = 0; i < kRegChunks; ++i) {
    const int c = first + i * step;
    if (c < chunks) {
      float fa[8], fb[8], xf[8];
      unpack8(load8(ra + c * 8), fa);
      unpack8(load8(rb + c * 8), fb);
      unpack8(xr[i], xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        a += fa[j] * xf[j];
        b += fb[j] * xf[j];
      }
    }
  }
}

// The units a block takes: a contiguous range, in groups of per_item (local index l = u - u0).
struct BlockUnits {
  int u0, u1, per_item;
  __device__ static BlockUnits of(int units, int per_item) {
    return {int(int64_t(blockIdx.x) * units / gridDim.x),
            int(int64_t(blockIdx.x + 1) * units / gridDim.x), per_item};
  }
  __device__ __forceinline__ int groups() const { return (u1 - u0 + per_item - 1) / per_item; }
  __device__ __forceinline__ int first_unit(int gi) const { return u0 + gi * per_item; }
  __device__ __forceinline__ int unit(int l) const { return u0 + l < u1 ? u0 + l : -1; }
  __device__ __forceinline__ int local_count() const { return u1 - u0; }
};

// Issues the copies of one item: the a rows wa[0 .. cnt) of its units into dst_a[i * seg_len],
// the b rows wb[...] into dst_b[...], segment [c0, c0 + len) of each. Whole rows that lie back
// to back in global memory (seg_len == k) go in one copy: per-row copies of 1.8 KiB held an
// H200's LM head to half of HBM, 14 KiB copies to two thirds.
__device__ __forceinline__ void issue_item(const bf16* const* wa, const bf16* const* wb, int cnt,
                                           int k, int c0, int len, int seg_len, bf16* dst_a,
                                           bf16* dst_b, uint64_t* bar) {
  const bool whole = len == k && seg_len == k;
  for (int half = 0; half < 2; ++half) {
    const bf16* const* w = half == 0 ? wa : wb;
    bf16* dst = half == 0 ? dst_a : dst_b;
    for (int i = 0; i < cnt;) {
      int run = 1;
      if (whole)
        while (i + run < cnt && w[i + run] == w[i] + int64_t(run) * k) ++run;
      bulk_load(dst + int64_t(i) * seg_len, w[i] + c0, uint32_t(2 * len * run), bar);
      i += run;
    }
  }
}

// The loop of every decode kernel (see the top of the file). Policy provides
//   rows(u, wa, wb)                 the unit's two rows (k elements each, 16-byte aligned)
//   prologue(bu, n, scratch)        consumers, before pdl_wait: step metadata
//   after_wait(bu, n, scratch)      consumers, after it: what the kernel before wrote
//   finish(u, l, n, a, b, scratch)  one lane, with the full sums of unit u (local index l)
//                                   for tokens < n
template <int M, class Policy>
__device__ __forceinline__ void stream_units(const Policy& pol, const Plan& pl, int n, int k,
                                             const bf16* x, int64_t ldx, const bf16* norm_w,
                                             float eps) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots], empty[kMaxSlots];
  __shared__ float part[2][kConsumerWarps][2 * M];
  bf16* xs = reinterpret_cast<bf16*>(smem);
  bf16* nws = reinterpret_cast<bf16*>(smem + pl.norm_off);
  bf16* ring = reinterpret_cast<bf16*>(smem + pl.ring_off);
  float* scratch = reinterpret_cast<float*>(smem + pl.scratch_off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const BlockUnits bu = BlockUnits::of(pl.units, pl.per_item);
  const int items = bu.groups() * pl.segs, half_slot = pl.per_item * pl.seg_len;

  if (threadIdx.x == 0) {
    for (int s = 0; s < pl.slots; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumerWarps);
    mbar_init_fence();
  }
  __syncthreads();

  if (warp == kConsumerWarps) {  // the producer: item j = (group j / segs, segment j % segs)
    if (lane != 0) return;
    // Counters, not divisions: this one thread issues every copy of the block. A group's row
    // pointers are worked out once, for all its segments.
    int s = 0, parity = 0, seg = 0, g = 0, cnt = 0;
    const bf16* wa[kConsumerWarps];
    const bf16* wb[kConsumerWarps];
    for (int j = 0; j < items; ++j) {
      if (j >= pl.slots) mbar_wait(&empty[s], parity ^ 1);  // freed in the round before
      if (seg == 0) {
        const int ub = bu.first_unit(g);
        cnt = min(pl.per_item, bu.u1 - ub);
        for (int i = 0; i < cnt; ++i) pol.rows(ub + i, wa[i], wb[i]);
      }
      const int c0 = seg * pl.seg_len, len = min(pl.seg_len, k - c0);
      bf16* dst = ring + int64_t(s) * 2 * half_slot;
      mbar_arrive_expect_tx(&full[s], uint32_t(4 * len * cnt));
      issue_item(wa, wb, cnt, k, c0, len, pl.seg_len, dst, dst + half_slot, &full[s]);
      if (++seg == pl.segs) seg = 0, ++g;
      if (++s == pl.slots) s = 0, parity ^= 1;
    }
    return;
  }

  pol.prologue(bu, n, scratch);
  if (norm_w)
    for (int c = threadIdx.x; c < k / 8; c += kConsumers)
      store8(nws + c * 8, load8(norm_w + c * 8));
  pdl_wait();  // from here on: what the kernel before wrote
  pol.after_wait(bu, n, scratch);
  stage_tokens<M>(xs, nws, x, ldx, n, k, norm_w != nullptr, eps);

  const int P = pl.split, slice = warp % P, ui = warp / P;
  const int first = slice * 32 + lane, step = 32 * P;
  // One token and whole rows: the lane's x chunks stay in registers (batch-1 decode).
  constexpr bool kRegs = M == 1;
  Bf16x8 xr[kRegChunks];
  const bool regs = kRegs && pl.segs == 1 && k / 8 <= kRegChunks * step;
  if (regs)
#pragma unroll
    for (int i = 0; i < kRegChunks; ++i) {
      const int c = first + i * step;
      xr[i] = c < k / 8 ? load8(xs + c * 8) : Bf16x8{};
    }

  float a[M], b[M];
#pragma unroll
  for (int m = 0; m < M; ++m) a[m] = b[m] = 0.f;
  int s = 0, parity = 0, seg = 0, g = 0;
  for (int j = 0; j < items; ++j) {
    const int u = bu.first_unit(g) + ui;
    const bool valid = u < bu.u1;
    const int c0 = seg * pl.seg_len, len = min(pl.seg_len, k - c0);
    const bf16* ra = ring + int64_t(s) * 2 * half_slot + int64_t(ui) * pl.seg_len;
    mbar_wait(&full[s], parity);
    if (valid) {
      if (kRegs && regs) dot_regs(a[0], b[0], ra, ra + half_slot, xr, len / 8, first, step);
      else dot_segment<M>(a, b, ra, ra + half_slot, xs, k, c0, len / 8, first, step);
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(&empty[s]);  // this warp is done with the slot
    if (++s == pl.slots) s = 0, parity ^= 1;
    if (++seg < pl.segs) continue;
    // The unit's last segment: reduce over the lanes, then over the warps that split it (in
    // warp order, so the result never depends on timing), and finish it.
#pragma unroll
    for (int m = 0; m < M; ++m) a[m] = warp_sum(a[m]), b[m] = warp_sum(b[m]);
    if (P > 1) {
      float* mine = part[g & 1][warp];  // two buffers: a warp may run one group ahead
      if (lane == 0)
#pragma unroll
        for (int m = 0; m < M; ++m) mine[m] = a[m], mine[M + m] = b[m];
      consumers_sync();
      if (slice == 0 && lane == 0)
        for (int w = 1; w < P; ++w) {
          const float* theirs = part[g & 1][warp + w];
#pragma unroll
          for (int m = 0; m < M; ++m) a[m] += theirs[m], b[m] += theirs[M + m];
        }
    }
    if (slice == 0 && lane == 0 && valid) pol.finish(u, u - bu.u0, n, a, b, scratch);
#pragma unroll
    for (int m = 0; m < M; ++m) a[m] = b[m] = 0.f;
    seg = 0, ++g;
  }
}

// Unit u: rows u and u + half (half = ceil(rows / 2)), so that consecutive units' rows lie back
// to back; with an odd row count the last unit reads its a row twice.
template <int M>
struct GemvPolicy {
  bf16* y;
  int64_t ldy;
  const bf16* w;
  int64_t ldw;
  int n_rows;
  bool accumulate;
  __device__ __forceinline__ int half() const { return (n_rows + 1) / 2; }
  __device__ __forceinline__ void rows(int u, const bf16*& ra, const bf16*& rb) const {
    ra = w + int64_t(u) * ldw;
    rb = w + int64_t(min(u + half(), n_rows - 1)) * ldw;
  }
  __device__ __forceinline__ void prologue(const BlockUnits&, int, float*) const {}
  // The residual (y before this product), read once the kernel that wrote it is done.
  __device__ __forceinline__ void after_wait(const BlockUnits& bu, int n, float* res) const {
    if (!accumulate) return;
    const int per = 2 * M;
    for (int idx = threadIdx.x; idx < bu.local_count() * per; idx += kConsumers) {
      const int u = bu.unit(idx / per), m = idx % per % M;
      const int r = u + (idx % per < M ? 0 : half());
      res[idx] = u >= 0 && m < n && r < n_rows ? to_f(y[m * ldy + r]) : 0.f;
    }
  }
  __device__ __forceinline__ void finish(int u, int l, int n, const float (&a)[M],
                                         const float (&b)[M], const float* res) const {
    const float* ru = res + l * 2 * M;
    const int rb = u + half();
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      y[m * ldy + u] = to_bf(a[m] + (accumulate ? ru[m] : 0.f));
      if (rb < n_rows) y[m * ldy + rb] = to_bf(b[m] + (accumulate ? ru[M + m] : 0.f));
    }
  }
};

template <int M>
__global__ void __launch_bounds__(kThreads, 2)
    gemv_kernel(GemvPolicy<M> pol, Plan pl, const bf16* __restrict__ x, int64_t ldx, int n, int k) {
  pdl_launch_dependents();
  stream_units<M>(pol, pl, n, k, x, ldx, nullptr, 0.f);
}

struct QkvParams {
  bf16* q_out;
  const bf16* x;
  const bf16* norm_w;
  float eps;
  int d;
  const bf16 *wq, *wk, *wv, *bq, *bk, *bv;
  const float* cos_sin;
  const int32_t* positions;
  const int32_t* slots;
  bf16 *k_cache, *v_cache;
  int n_heads, n_kv_heads, head_dim;
};

// Two-row units of the fused q|k|v product (see QkvPolicy).
__host__ __device__ inline int qkv_units(const QkvParams& p) {
  return (p.n_heads + 2 * p.n_kv_heads) * (p.head_dim / 2);
}

// Units: rope pairs (j, j + half) of every q head, then of every k head, then v rows i and
// i + rows / 2. Scratch (filled before pdl_wait): the tokens' positions and cache slots, their
// rope rows (cos | sin, head_dim floats each) and the bias of the block's units.
template <int M>
struct QkvPolicy {
  QkvParams p;
  // kind 0 q, 1 k, 2 v
  __device__ __forceinline__ void unit(int u, int& kind, int& r0, int& r1) const {
    const int half = p.head_dim / 2, uq = p.n_heads * half, uk = p.n_kv_heads * half;
    if (u < uq + uk) {
      kind = u < uq ? 0 : 1;
      const int v = kind == 0 ? u : u - uq;
      r0 = (v / half) * p.head_dim + v % half;
      r1 = r0 + half;
    } else {
      kind = 2;
      r0 = u - uq - uk;
      r1 = r0 + p.n_kv_heads * half;
    }
  }
  __device__ __forceinline__ void rows(int u, const bf16*& ra, const bf16*& rb) const {
    int kind, r0, r1;
    unit(u, kind, r0, r1);
    const bf16* W = kind == 0 ? p.wq : kind == 1 ? p.wk : p.wv;
    ra = W + int64_t(r0) * p.d;
    rb = W + int64_t(r1) * p.d;
  }
  // scratch: [pos M][slot M][rope M x head_dim][bias, 2 per local unit]
  __device__ __forceinline__ void prologue(const BlockUnits& bu, int n, float* scr) const {
    int* pos = reinterpret_cast<int*>(scr);
    const int hd = p.head_dim;
    for (int m = threadIdx.x; m < n; m += kConsumers)
      pos[m] = p.positions[m], pos[M + m] = p.slots[m];
    for (int idx = threadIdx.x; idx < n * hd; idx += kConsumers)
      scr[2 * M + idx] = p.cos_sin[int64_t(p.positions[idx / hd]) * hd + idx % hd];
    for (int idx = threadIdx.x; idx < bu.local_count() * 2; idx += kConsumers) {
      const int u = bu.unit(idx / 2);
      if (u < 0) continue;
      int kind, r0, r1;
      unit(u, kind, r0, r1);
      const bf16* B = kind == 0 ? p.bq : kind == 1 ? p.bk : p.bv;
      scr[2 * M + M * hd + idx] = B ? to_f(B[idx % 2 ? r1 : r0]) : 0.f;
    }
  }
  __device__ __forceinline__ void after_wait(const BlockUnits&, int, float*) const {}
  __device__ __forceinline__ void finish(int u, int l, int n, const float (&a)[M],
                                         const float (&b)[M], const float* scr) const {
    int kind, r0, r1;
    unit(u, kind, r0, r1);
    const int* pos = reinterpret_cast<const int*>(scr);
    const int hd = p.head_dim, half = hd / 2;
    const float* bias = scr + 2 * M + M * hd + l * 2;
    const bool has_bias = (kind == 0 ? p.bq : kind == 1 ? p.bk : p.bv) != nullptr;
    const int64_t q_row = int64_t(p.n_heads) * hd, kv_row = int64_t(p.n_kv_heads) * hd;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      // Rounded where the op sequence rounds: after the product, after the bias.
      float v0 = round_bf(a[m]), v1 = round_bf(b[m]);
      if (has_bias) v0 = round_bf(v0 + bias[0]), v1 = round_bf(v1 + bias[1]);
      const int32_t slot = pos[M + m];
      if (kind == 2) {
        if (slot < 0) continue;
        p.v_cache[slot * kv_row + r0] = to_bf(v0);
        p.v_cache[slot * kv_row + r1] = to_bf(v1);
        continue;
      }
      const int j = r0 % hd;
      const float* cs = scr + 2 * M + m * hd;
      const float c = cs[j], s = cs[half + j];
      const bf16 o0 = to_bf(v0 * c - v1 * s), o1 = to_bf(v1 * c + v0 * s);
      if (kind == 0) {
        p.q_out[m * q_row + r0] = o0;
        p.q_out[m * q_row + r1] = o1;
      } else if (slot >= 0) {
        p.k_cache[slot * kv_row + r0] = o0;
        p.k_cache[slot * kv_row + r1] = o1;
      }
    }
  }
};

template <int M>
__global__ void __launch_bounds__(kThreads, 2) qkv_kernel(QkvParams p, Plan pl, int n) {
  pdl_launch_dependents();
  stream_units<M>(QkvPolicy<M>{p}, pl, n, p.d, p.x, p.d, p.norm_w, p.eps);
}

// Unit u: gate row u and up row u, which SwiGLU combines.
template <int M>
struct GateUpPolicy {
  bf16* h;
  const bf16 *wg, *wu;
  int d, inter;
  __device__ __forceinline__ void rows(int u, const bf16*& ra, const bf16*& rb) const {
    ra = wg + int64_t(u) * d;
    rb = wu + int64_t(u) * d;
  }
  __device__ __forceinline__ void prologue(const BlockUnits&, int, float*) const {}
  __device__ __forceinline__ void after_wait(const BlockUnits&, int, float*) const {}
  __device__ __forceinline__ void finish(int u, int, int n, const float (&g)[M],
                                         const float (&up)[M], const float*) const {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      const float gv = round_bf(g[m]), uv = round_bf(up[m]);
      h[int64_t(m) * inter + u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
    }
  }
};

template <int M>
__global__ void __launch_bounds__(kThreads, 2)
    gate_up_kernel(GateUpPolicy<M> pol, const bf16* __restrict__ x,
                   const bf16* __restrict__ norm_w, float eps, Plan pl, int n) {
  pdl_launch_dependents();
  stream_units<M>(pol, pl, n, pol.d, x, pol.d, norm_w, eps);
}

size_t align16(size_t b) { return (b + 15) / 16 * 16; }

Plan make_plan(int64_t units, int64_t k, int M, bool norm, int sms, size_t scratch_fixed,
               size_t scratch_per_unit, unsigned& blocks, size_t& smem) {
  Plan p{};
  p.units = int(units);
  blocks = unsigned(std::clamp<int64_t>(units, 1, std::max(1, sms)));
  const int64_t per_block = (units + blocks - 1) / blocks;
  p.per_item = 1;
  while (p.per_item < kConsumerWarps && p.per_item < per_block) p.per_item *= 2;
  p.split = kConsumerWarps / p.per_item;
  const int64_t row_pairs_bytes = int64_t(4) * p.per_item;  // bytes per k element of an item
  const int64_t slot_max = int64_t(kSlotBytes);
  p.segs = int(std::max<int64_t>(1, (row_pairs_bytes * k + slot_max - 1) / slot_max));
  p.seg_len = int(((k + p.segs - 1) / p.segs + 7) / 8 * 8);
  const size_t slot = size_t(row_pairs_bytes) * p.seg_len;
  const int64_t items = (per_block + p.per_item - 1) / p.per_item * p.segs;
  p.slots = int(
      std::clamp<int64_t>(std::min<int64_t>(int64_t(kRingBytes / slot), items), 1, kMaxSlots));
  size_t off = align16(size_t(M) * k * 2);
  p.norm_off = int(off);
  off += norm ? align16(size_t(k) * 2) : 0;
  p.ring_off = int(off);
  off += size_t(p.slots) * slot;
  p.scratch_off = int(off);
  off += align16(scratch_fixed + scratch_per_unit * size_t(per_block));
  smem = off;
  return p;
}

// Dynamic shared memory above the 48 KiB default needs an opt-in per kernel; flash-attention
// style, set on each launch that needs it (a host-side attribute, fine under stream capture).
template <class Kernel>
void allow_smem(Kernel kernel, size_t smem) {
  if (smem > 48 * 1024)
    SIESTA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(smem)));
}

// Kernels are compiled for 1, 2, 4 and 8 tokens; a call with n tokens runs the smallest that
// holds them (the rest stage as zeros and are never written).
template <template <int> class Launch, class... Args>
void dispatch_tokens(int n, Args&&... args) {
  if (n <= 1) return Launch<1>::run(n, args...);
  if (n <= 2) return Launch<2>::run(n, args...);
  if (n <= 4) return Launch<4>::run(n, args...);
  if (n <= kMaxTokens) return Launch<8>::run(n, args...);
  throw KernelError("decode gemv: " + std::to_string(n) + " tokens, allowed 1.." +
                    std::to_string(kMaxTokens));
}

template <int M>
struct LaunchGemv {
  static void run(int n, const GemmArgs& g, int sms, cudaStream_t st) {
    unsigned blocks;
    size_t smem;
    const bool acc = g.beta != 0.f;
    const Plan pl =
        make_plan((g.n + 1) / 2, g.k, M, false, sms, 0, acc ? 2 * M * 4 : 0, blocks, smem);
    GemvPolicy<M> pol{static_cast<bf16*>(g.c), g.ldc, static_cast<const bf16*>(g.b), g.ldb,
                      int(g.n), acc};
    allow_smem(gemv_kernel<M>, smem);
    launch_pdl(gemv_kernel<M>, dim3(blocks), dim3(kThreads), smem, st, pol, pl,
               static_cast<const bf16*>(g.a), g.lda, n, int(g.k));
  }
};
template <int M>
struct LaunchQkv {
  static void run(int n, const QkvParams& p, int sms, cudaStream_t st) {
    unsigned blocks;
    size_t smem;
    const Plan pl = make_plan(qkv_units(p), p.d, M, true, sms,
                              size_t(2 * M + M * p.head_dim) * 4, 2 * 4, blocks, smem);
    allow_smem(qkv_kernel<M>, smem);
    launch_pdl(qkv_kernel<M>, dim3(blocks), dim3(kThreads), smem, st, p, pl, n);
  }
};
template <int M>
struct LaunchGateUp {
  static void run(int n, bf16* h, const bf16* x, const bf16* nw, float eps, const bf16* wg,
                  const bf16* wu, int d, int inter, int sms, cudaStream_t st) {
    unsigned blocks;
    size_t smem;
    const Plan pl = make_plan(inter, d, M, true, sms, 0, 0, blocks, smem);
    allow_smem(gate_up_kernel<M>, smem);
    launch_pdl(gate_up_kernel<M>, dim3(blocks), dim3(kThreads), smem, st,
               GateUpPolicy<M>{h, wg, wu, d, inter}, x, nw, eps, pl, n);
  }
};

// Tokens are staged for the compiled M (1, 2, 4, 8) that holds them.
int max_tokens_for(int64_t k) {
  if (k <= 0 || k % 8 != 0 || k >= (int64_t(1) << 30)) return 0;
  const int64_t fit = int64_t(kTokenBytes) / (k * 2);
  for (int m : {8, 4, 2, 1})
    if (m <= fit) return m;
  return 0;
}

// Ops::gemm takes this kernel up to this many rows; cuBLAS's tensor-core tiles win beyond it
// (this kernel's FMAs grow with the rows, its bytes do not). And only up to this many bytes of
// weights: on a matrix as large as an LM head, cuBLAS keeps HBM busier (see the top).
constexpr int kGemvMaxRows = 4;
constexpr int64_t kGemvMaxBytes = int64_t(64) << 20;

// SIESTA_DECODE_GEMV=0 leaves every gemm to cuBLAS, =all sends it every shape the kernel
// takes however large (the LM head too): for comparing the two on one binary, and for ncu.
enum class GemvUse { Never, Default, Always };
GemvUse decode_gemv_use() {
  static const GemvUse use = [] {
    const char* v = std::getenv("SIESTA_DECODE_GEMV");
    if (v && std::strcmp(v, "0") == 0) return GemvUse::Never;
    if (v && std::strcmp(v, "all") == 0) return GemvUse::Always;
    return GemvUse::Default;
  }();
  return use;
}

}  // namespace

bool CudaOps::gemv(const GemmArgs& g) {
  const GemvUse use = decode_gemv_use();
  if (!hopper_ || use == GemvUse::Never || g.m > kGemvMaxRows || g.trans_a || !g.trans_b ||
      g.c_dtype != DType::BF16 || g.alpha != 1.f || (g.beta != 0.f && g.beta != 1.f) ||
      g.m < 1 || g.m > max_tokens_for(g.k) || g.n >= (int64_t(1) << 31) || g.lda % 8 != 0 ||
      g.ldb % 8 != 0 || !aligned16(g.a) || !aligned16(g.b) ||
      (use == GemvUse::Default && g.n * g.k * 2 > kGemvMaxBytes))
    return false;
  activate();
  dispatch_tokens<LaunchGemv>(int(g.m), g, sm_count_, stream_);
  return true;
}

// 0 before Hopper: the model then decodes op by op (cuBLAS, rmsnorm, rope, ... kernels).
int CudaOps::fused_decode_max_tokens(int64_t hidden) const {
  return hopper_ ? max_tokens_for(hidden) : 0;
}

void CudaOps::norm_qkv_rope_cache(void* q_out, const void* x, const void* norm_w, float eps,
                                  int64_t d, const QkvWeights& w, const float* cos_sin_f32,
                                  const PagedKv& cache, const PagedBatch& b, const AttnShape& s) {
  const int n = b.num_tokens;
  require(hopper_ || n == 0, "norm_qkv_rope_cache: needs compute capability 9.0 or newer "
                            "(fused_decode_max_tokens is 0 on this GPU)");
  require(n >= 0 && n <= max_tokens_for(d), [&] {
    return "norm_qkv_rope_cache: " + std::to_string(n) + " tokens with hidden size " +
           std::to_string(d) + ", allowed 0.." + std::to_string(max_tokens_for(d)) +
           " (fused_decode_max_tokens)";
  });
  require(s.n_heads > 0 && s.n_kv_heads > 0 && s.head_dim > 0 && s.head_dim % 2 == 0, [&] {
    return "norm_qkv_rope_cache: heads must be > 0 and head_dim even (got " +
           std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " heads, head_dim " +
           std::to_string(s.head_dim) + ")";
  });
  require(w.q && w.k && w.v && norm_w, "norm_qkv_rope_cache: q, k, v and norm weights are required");
  require(aligned16(x) && aligned16(norm_w) && aligned16(w.q) && aligned16(w.k) && aligned16(w.v),
          "norm_qkv_rope_cache: x and the weights must be 16-byte aligned");
  if (n == 0) return;
  activate();
  QkvParams p;
  p.q_out = static_cast<bf16*>(q_out);
  p.x = static_cast<const bf16*>(x);
  p.norm_w = static_cast<const bf16*>(norm_w);
  p.eps = eps;
  p.d = int(d);
  p.wq = static_cast<const bf16*>(w.q);
  p.wk = static_cast<const bf16*>(w.k);
  p.wv = static_cast<const bf16*>(w.v);
  p.bq = static_cast<const bf16*>(w.q_bias);
  p.bk = static_cast<const bf16*>(w.k_bias);
  p.bv = static_cast<const bf16*>(w.v_bias);
  p.cos_sin = cos_sin_f32;
  p.positions = b.positions;
  p.slots = b.slot_mapping;
  p.k_cache = static_cast<bf16*>(cache.k);
  p.v_cache = static_cast<bf16*>(cache.v);
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  dispatch_tokens<LaunchQkv>(n, p, sm_count_, stream_);
}

void CudaOps::norm_gate_up(void* h, const void* x, const void* norm_w, float eps,
                           const void* gate_w, const void* up_w, int64_t n, int64_t d,
                           int64_t inter) {
  require(hopper_ || n == 0, "norm_gate_up: needs compute capability 9.0 or newer "
                            "(fused_decode_max_tokens is 0 on this GPU)");
  require(n >= 0 && n <= max_tokens_for(d), [&] {
    return "norm_gate_up: " + std::to_string(n) + " tokens with hidden size " + std::to_string(d) +
           ", allowed 0.." + std::to_string(max_tokens_for(d)) + " (fused_decode_max_tokens)";
  });
  require(inter > 0 && inter < (int64_t(1) << 31), [&] {
    return "norm_gate_up: intermediate size must be in [1, 2^31) (got " + std::to_string(inter) +
           ")";
  });
  require(aligned16(x) && aligned16(norm_w) && aligned16(gate_w) && aligned16(up_w),
          "norm_gate_up: x and the weights must be 16-byte aligned");
  if (n == 0) return;
  activate();
  dispatch_tokens<LaunchGateUp>(int(n), static_cast<bf16*>(h), static_cast<const bf16*>(x),
                                static_cast<const bf16*>(norm_w), eps,
                                static_cast<const bf16*>(gate_w), static_cast<const bf16*>(up_w),
                                int(d), int(inter), sm_count_, stream_);
}

}  // namespace siesta::kernels::cuda
