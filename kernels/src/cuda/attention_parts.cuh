// Decode attention over the paged KV cache in parts (flash-decoding): task (token t, head h,
// part sp) runs paged_attention's online softmax over one stretch of the token's causal
// context and writes it unnormalised, [max, sum, -, -, head_dim sums] (head_dim + 4 floats);
// combine_parts_with then merges a head's parts as one pass would have normalised them. With a
// batch of one token and 14 heads, one block per head leaves most SMs idle while each walks
// hundreds of keys one dependent load after another; parts spread the walk over the GPU.
// Used by paged_attention.cu (decode batches too small to fill the GPU) and decode_layers.cu.
// Reads of q and the cache go through L2 (load8_cg): in decode_layers.cu another block of the
// same kernel wrote them.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kMaxParts = 8;

// The online softmax that both attention kernels run: a group of TPK lanes holds one key at a
// time, each lane 8 head-dim elements of q, k, v and the accumulators, the group's running max
// m and sum l alike in every lane. One key: q.k over the group (every lane calls it: the
// shuffles), and for a valid key the rescaled update.
template <int TPK>
__device__ __forceinline__ void attend_key(float& m, float& l, float (&acc)[8],
                                           const float (&qv)[8], const float (&kf)[8],
                                           const float (&vf)[8], bool valid) {
  float dot = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) dot += qv[i] * kf[i];
#pragma unroll
  for (int o = TPK / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  if (!valid) return;
  const float m_new = fmaxf(m, dot);
  const float c = __expf(m - m_new);  // 0 when m was -inf
  const float e = __expf(dot - m_new);
  l = l * c + e;
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = acc[i] * c + e * vf[i];
  m = m_new;
}

// Merges the states of the 32 / TPK groups of a warp by shuffles (partners hold the same
// head-dim slice); every group ends with the warp's state.
template <int TPK>
__device__ __forceinline__ void merge_warp_groups(float& m, float& l, float (&acc)[8]) {
#pragma unroll
  for (int o = TPK; o < 32; o <<= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
    const float M2 = fmaxf(m, m2);
    const float c1 = M2 == -INFINITY ? 0.f : __expf(m - M2);
    const float c2 = M2 == -INFINITY ? 0.f : __expf(m2 - M2);
    l = l * c1 + l2 * c2;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = acc[i] * c1 + __shfl_xor_sync(0xffffffffu, acc[i], o) * c2;
    m = M2;
  }
}

// The sequence that token t belongs to: the last s with q_start[s] <= t.
__device__ __forceinline__ int seq_of(const int32_t* __restrict__ q_start, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (q_start[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

struct PartsArgs {
  const bf16* q;        // [tokens, n_heads * head_dim]
  const bf16* k_cache;  // [blocks, block_size, n_kv_heads, head_dim]
  const bf16* v_cache;
  float* part;  // [tokens, n_heads, parts, head_dim + 4]
  const int32_t *q_start, *context_len, *block_table;
  int max_blocks_per_seq, block_size, num_seqs, n_heads, n_kv_heads, parts;
  float scale;
};

// Threads 0 .. THREADS-1 of the block (named barrier 1) run task (t, h, sp), task =
// (t * n_heads + h) * parts + sp. Groups of TPK threads (TPK * 8 == head_dim) own one key at a
// time, two in flight; the groups' states merge by shuffles, then through shared memory.
// wait() returns once this step's q and new K/V rows are written (pdl_wait, or the grid-wide
// wait of decode_layers). With kEarly, before it the task loads what earlier steps wrote
// (metadata, the first keys of its part that are not new), so two of its dependent round trips
// to memory overlap the kernel before; it holds those rows in registers across the wait, which
// decode_layers (at its register limit: it spilled, and every op slowed) cannot afford.
// The part's result goes to a.part's row for the task, or to dst (shared memory) if given.
template <int TPK, int THREADS, bool kEarly, class Wait>
__device__ void attend_part(const PartsArgs& a, int task, const Wait& wait,
                            float* dst = nullptr) {
  constexpr int kWarps = THREADS / 32, kGroupsPerWarp = 32 / TPK, kGroups = THREADS / TPK;
  constexpr int hd = TPK * 8;
  __shared__ float sm_m[kWarps], sm_l[kWarps];
  __shared__ float sm_acc[kWarps * TPK * 8];
  const auto sync = [] { asm volatile("bar.sync 1, %0;" ::"n"(THREADS) : "memory"); };
  const int S = a.parts, H = a.n_heads;
  const int sp = task % S, h = task / S % H, t = task / (S * H);
  const int hk = h / (H / a.n_kv_heads);
  const int s = seq_of(a.q_start, a.num_seqs, t);
  const int q_len = a.q_start[s + 1] - a.q_start[s];
  const int n_old = a.context_len[s] - q_len;         // keys earlier steps wrote
  const int n_keys = n_old + (t - a.q_start[s]) + 1;  // positions 0 .. own
  const int chunk = (n_keys + S - 1) / S;
  const int k0 = sp * chunk, k1 = min(n_keys, k0 + chunk);
  const int32_t* table = a.block_table + int64_t(s) * a.max_blocks_per_seq;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gw = lane / TPK, lig = lane % TPK, d0 = lig * 8;
  const int64_t kv_row = int64_t(a.n_kv_heads) * hd;

  float kf[2][8], vf[2][8];
  bool valid[2];
  int64_t off[2];
  // Key slots of a trip; K/V rows loaded unless only the old ones may be (before wait()).
  const auto load_trip = [&](int base, bool old_only) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int kk = base + gw + r * kGroups;
      valid[r] = kk < k1;
      if (valid[r]) {
        off[r] = (int64_t(table[kk / a.block_size]) * a.block_size + kk % a.block_size) * kv_row +
                 int64_t(hk) * hd + d0;
        if (!old_only || kk < n_old) {
          unpack8(load8_cg(a.k_cache + off[r]), kf[r]);
          unpack8(load8_cg(a.v_cache + off[r]), vf[r]);
        }
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) kf[r][i] = vf[r][i] = 0.f;
      }
    }
  };
  float qv[8], acc[8];
  float m = -INFINITY, l = 0.f;
  const auto attend_trip = [&] {
#pragma unroll
    for (int r = 0; r < 2; ++r) attend_key<TPK>(m, l, acc, qv, kf[r], vf[r], valid[r]);
  };

  // Warp-uniform trip counts (base depends on the warp only): the shuffles need every lane.
  int base = k0 + warp * kGroupsPerWarp;
  if (kEarly && base < k1) load_trip(base, true);
  wait();
  unpack8(load8_cg(a.q + (int64_t(t) * H + h) * hd + d0), qv);
#pragma unroll
  for (int i = 0; i < 8; ++i) qv[i] *= a.scale, acc[i] = 0.f;
  if (kEarly && base < k1) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int kk = base + gw + r * kGroups;
      if (valid[r] && kk >= n_old) {  // this step's own rows
        unpack8(load8_cg(a.k_cache + off[r]), kf[r]);
        unpack8(load8_cg(a.v_cache + off[r]), vf[r]);
      }
    }
    attend_trip();
    base += 2 * kGroups;
  }
  for (; base < k1; base += 2 * kGroups) {
    load_trip(base, false);
    attend_trip();
  }
  // Merge the groups of a warp, then the warps.
  merge_warp_groups<TPK>(m, l, acc);
  if (gw == 0) {
    if (lig == 0) sm_m[warp] = m, sm_l[warp] = l;
#pragma unroll
    for (int i = 0; i < 8; ++i) sm_acc[(warp * TPK + lig) * 8 + i] = acc[i];
  }
  sync();
  float M = -INFINITY;
  for (int i = 0; i < kWarps; ++i)
    if (sm_l[i] > 0.f) M = fmaxf(M, sm_m[i]);
  float* out = dst ? dst : a.part + int64_t(task) * (hd + 4);
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int i = 0; i < kWarps; ++i)
      if (sm_l[i] > 0.f) sum += sm_l[i] * __expf(sm_m[i] - M);
    out[0] = M;
    out[1] = sum;
  }
  for (int d = threadIdx.x; d < hd; d += THREADS) {
    float r = 0.f;
    for (int i = 0; i < kWarps; ++i)
      if (sm_l[i] > 0.f) r += sm_acc[i * TPK * 8 + d] * __expf(sm_m[i] - M);
    out[4 + d] = r;
  }
  sync();  // the sm_ arrays serve the block's next task
}

// One part as combine_parts_with reads it: (max, sum) and 8 head-dim values.
struct PartSlice {
  float2 ml;
  float4 x, y;
};

// Part ps's (max, sum) and head-dim slice c, through L2 (a part another block wrote to global
// memory) or with generic loads (shared memory, the cluster's included).
template <bool kThroughL2>
__device__ __forceinline__ PartSlice load_part_slice(const float* ps, int c) {
  const auto* ml = reinterpret_cast<const float2*>(ps);
  const auto* x = reinterpret_cast<const float4*>(ps + 4 + c * 8);
  const auto* y = reinterpret_cast<const float4*>(ps + 8 + c * 8);
  if constexpr (kThroughL2) return PartSlice{__ldcg(ml), __ldcg(x), __ldcg(y)};
  else return PartSlice{*ml, *x, *y};
}

// Head-dim slice c (8 values) of the attention output of one (token, head): its `parts` parts
// merged and normalised. part_at(s) is where part s starts; every part is loaded at once: one
// round trip, not three per part.
template <bool kThroughL2, class PartAt>
__device__ __forceinline__ Bf16x8 combine_parts_with(const PartAt& part_at, int parts, int c) {
  PartSlice p[kMaxParts];
#pragma unroll
  for (int s = 0; s < kMaxParts; ++s)
    if (s < parts) p[s] = load_part_slice<kThroughL2>(part_at(s), c);
  float mx = -INFINITY;
#pragma unroll
  for (int s = 0; s < kMaxParts; ++s)
    if (s < parts && p[s].ml.y > 0.f) mx = fmaxf(mx, p[s].ml.x);
  float o[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, sum = 0.f;
#pragma unroll
  for (int s = 0; s < kMaxParts; ++s) {
    if (!(s < parts && p[s].ml.y > 0.f)) continue;
    const float w = __expf(p[s].ml.x - mx);
    sum += p[s].ml.y * w;
    o[0] += w * p[s].x.x, o[1] += w * p[s].x.y, o[2] += w * p[s].x.z, o[3] += w * p[s].x.w;
    o[4] += w * p[s].y.x, o[5] += w * p[s].y.y, o[6] += w * p[s].y.z, o[7] += w * p[s].y.w;
  }
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) o[i] *= inv;
  return pack8(o);
}

// The same for parts written to global memory from base on, (head_dim + 4) floats each; read
// through L2 (another block wrote them).
__device__ __forceinline__ Bf16x8 combine_parts(const float* base, int parts, int head_dim, int c) {
  return combine_parts_with<true>([&](int s) { return base + s * (head_dim + 4); }, parts, c);
}

}  // namespace
}  // namespace siesta::kernels::cuda
