// The streaming machinery of the decode kernels (decode_gemv.cu: one op per kernel;
// decode_layers.cu: every layer of a decode step in one kernel). Work comes in "units" of two
// weight rows (two, so that a rope pair, or a gate row and its up row, meet in one place). A
// block takes a contiguous range of units in "items" of up to 8 units and one k-segment. One
// producer thread streams the items into a ring of shared-memory slots with bulk copies (TMA,
// bulk_copy.cuh), rows that lie back to back in one copy; the 8 consumer warps all work on
// each item (warp w on unit w / split, slice w % split of its chunks) and hand the slot back.
// A Policy says what a unit's rows are and what happens with its sums (see consume_items).
// Activations (x, the residual) are read with L2-coherent loads (load8_cg): in decode_layers.cu
// other blocks of the same kernel wrote them.
#pragma once

#include <algorithm>
#include <cstdint>

#include "bulk_copy.cuh"
#include "common.cuh"

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
// A load from an SM waits behind the bytes that SM already has in flight: on an H200, 132 blocks
// exchanging a 896-value vector took 1.4 us with nothing in flight, 2.8 / 6.3 / 16 us with
// 32 / 64 / 160 KiB of bulk copies in flight on each SM (sync.cu in
// docs/results/2026-12-03-h200-batch1-primitives). So a stream kernel's producer holds back
// copies until the consumers have staged x: a block that starts late (no room on its SM until
// the kernel before left) would otherwise stage x behind all of them. One token: at most this
// many items before staging (0.5b batch 1: 0.614-0.616 -> 0.608-0.610 ms; one item: 0.648;
// holding from pdl_wait on instead: 0.615-0.623). Several tokens (Plan::stage_when_waited):
// nothing new once the consumers are past pdl_wait (batch 8: 1.20-1.21 -> 1.18-1.19 ms, measured
// at 8; 2 and 4 tokens take the same rule unmeasured).
constexpr int kItemsBeforeStaging = 2;

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
  bool stage_when_waited;  // see kItemsBeforeStaging
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
      v = load8_cg(x + m * ldx + c * 8);
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

// The same for one token whose chunks (first + i * step) are in registers, zeros past the row.
// No branch per chunk: a chunk past the row reads the row's last chunk and multiplies it by
// those zeros (with finite weights that adds +-0, which changes no sum), so every load is issued
// before the first product instead of one load latency per chunk.
__device__ __forceinline__ void dot_regs(float& a, float& b, const bf16* ra, const bf16* rb,
                                         const Bf16x8 (&xr)[kRegChunks], int chunks, int first,
                                         int step) {
  Bf16x8 wa[kRegChunks], wb[kRegChunks];
#pragma unroll
  for (int i = 0; i < kRegChunks; ++i) {
    const int c = min(first + i * step, chunks - 1);
    wa[i] = load8(ra + c * 8);
    wb[i] = load8(rb + c * 8);
  }
#pragma unroll
  for (int i = 0; i < kRegChunks; ++i) {
    float fa[8], fb[8], xf[8];
    unpack8(wa[i], fa);
    unpack8(wb[i], fb);
    unpack8(xr[i], xf);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      a += fa[j] * xf[j];
      b += fb[j] * xf[j];
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

// The ring of weight slots a block streams through: slot i holds an item at base + i * stride
// (bf16 elements), full[i] says it landed, empty[i] that every consumer warp is done with it.
struct Ring {
  bf16* base;
  uint64_t* full;
  uint64_t* empty;
  int slots, stride;
  // One thread, before the block's barrier that precedes any use: every slot starts empty.
  __device__ __forceinline__ void init_barriers() const {
    for (int s = 0; s < slots; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumerWarps);
    mbar_init_fence();
  }
};

// The norm weight (k elements) into shared memory, by the consumer warps.
__device__ __forceinline__ void load_norm(bf16* nws, const bf16* w, int k) {
  for (int c = threadIdx.x; c < k / 8; c += kConsumers) store8(nws + c * 8, load8(w + c * 8));
}

// Where the producer, or the consumers, are in the ring; each side keeps its own, across every
// op a kernel streams.
struct RingPos {
  int s = 0, parity = 0, used = 0;
  __device__ __forceinline__ void advance(int slots) {
    ++used;
    if (++s == slots) s = 0, parity ^= 1;
  }
};

// The producer thread: issues the block's items of one op, item j = (group j / segs, segment
// j % segs), each into the next slot once the consumers gave it back. With `staged` (flags the
// consumers set: [0] x staged, [1] past pdl_wait) it holds copies back until x is staged, as
// kItemsBeforeStaging says. Counters, not divisions:
// this one thread issues every copy of the block. A group's row pointers are worked out once,
// for all its segments.
template <class Policy>
__device__ __forceinline__ void produce_items(const Policy& pol, const Plan& pl,
                                              const BlockUnits& bu, int k, const Ring& r,
                                              RingPos& pos, const volatile int* staged = nullptr) {
  const int items = bu.groups() * pl.segs, half_slot = pl.per_item * pl.seg_len;
  int seg = 0, g = 0, cnt = 0;
  const bf16* wa[kConsumerWarps];
  const bf16* wb[kConsumerWarps];
  for (int j = 0; j < items; ++j) {
    if (staged && (pl.stage_when_waited ? staged[1] != 0 : j == kItemsBeforeStaging))
      while (!staged[0]) __nanosleep(32);
    if (pos.used >= r.slots) mbar_wait(&r.empty[pos.s], pos.parity ^ 1);  // freed last round
    if (seg == 0) {
      const int ub = bu.first_unit(g);
      cnt = min(pl.per_item, bu.u1 - ub);
      for (int i = 0; i < cnt; ++i) pol.rows(ub + i, wa[i], wb[i]);
    }
    const int c0 = seg * pl.seg_len, len = min(pl.seg_len, k - c0);
    bf16* dst = r.base + int64_t(pos.s) * r.stride;
    mbar_arrive_expect_tx(&r.full[pos.s], uint32_t(4 * len * cnt));
    issue_item(wa, wb, cnt, k, c0, len, pl.seg_len, dst, dst + half_slot, &r.full[pos.s]);
    if (++seg == pl.segs) seg = 0, ++g;
    pos.advance(r.slots);
  }
}

// The consumer warps: work the block's items of one op as they land, x (M staged tokens, k
// each) in xs. Policy::finish(u, l, n, a, b, scratch) gets, on one lane, the full sums of unit
// u (local index l) for tokens < n.
template <int M, class Policy>
__device__ __forceinline__ void consume_items(const Policy& pol, const Plan& pl,
                                              const BlockUnits& bu, int n, int k, const bf16* xs,
                                              const Ring& r, RingPos& pos, const float* scratch,
                                              unsigned long long* data_wait_ns = nullptr) {
  __shared__ float part[2][kConsumerWarps][2 * M];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int items = bu.groups() * pl.segs, half_slot = pl.per_item * pl.seg_len;
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
  int seg = 0, g = 0;
  for (int j = 0; j < items; ++j) {
    const int u = bu.first_unit(g) + ui;
    const bool valid = u < bu.u1;
    const int c0 = seg * pl.seg_len, len = min(pl.seg_len, k - c0);
    const bf16* ra = r.base + int64_t(pos.s) * r.stride + int64_t(ui) * pl.seg_len;
    if (data_wait_ns && threadIdx.x == 0) {  // a diagnostic: how long the items kept us waiting
      unsigned long long t0, t1;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
      mbar_wait(&r.full[pos.s], pos.parity);
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
      *data_wait_ns += t1 - t0;
    } else {
      mbar_wait(&r.full[pos.s], pos.parity);
    }
    if (valid) {
      if (kRegs && regs) dot_regs(a[0], b[0], ra, ra + half_slot, xr, len / 8, first, step);
      else dot_segment<M>(a, b, ra, ra + half_slot, xs, k, c0, len / 8, first, step);
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(&r.empty[pos.s]);  // this warp is done with the slot
    pos.advance(r.slots);
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
      res[idx] = u >= 0 && m < n && r < n_rows ? to_f(__ldcg(y + m * ldy + r)) : 0.f;
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

size_t align16(size_t b) { return (b + 15) / 16 * 16; }

Plan make_plan(int64_t units, int64_t k, int M, bool norm, int sms, size_t scratch_fixed,
               size_t scratch_per_unit, unsigned& blocks, size_t& smem) {
  Plan p{};
  p.units = int(units);
  p.stage_when_waited = M > 1;
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

}  // namespace
}  // namespace siesta::kernels::cuda
