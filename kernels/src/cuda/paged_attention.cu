// Inference attention over the paged KV cache (vLLM layout [num_blocks, block_size, n_kv_heads,
// head_dim]): kv_cache_write scatters new K/V rows to their slots (qkv_bias_rope_cache does so
// after the biases and rope, from the packed rows of the q/k/v GEMM); paged_attention runs an
// online softmax over the sequence's cached tokens at positions <= the token's own, for decode
// (q_len 1) and prefill alike, in one kernel (paged_attention_kernel) with a thread block per
// (new token, query head), or per (new token, KV head, four of its query heads) where the
// batch's (token, KV head) pairs fill half the GPU: that block reads each K/V row once for its
// heads. A decode batch with too few (token, head) pairs to fill half the GPU runs in parts
// instead on Hopper (attention_parts.cuh): a block per (token, head, part), a cluster per
// (token, head).
//
// Inside a block, groups of TPK threads each own one key at a time (kKeysPerTrip in flight),
// every thread holding 8 consecutive head-dim elements (one 16-byte load of K and of V per
// key); the groups' partial softmax states (max, sum, 8 accumulators per thread) are merged at
// the end, within a warp by shuffles and across warps through shared memory.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <cooperative_groups.h>

#include "attention_parts.cuh"
#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

namespace cg = cooperative_groups;

// Threads per (token, head) block: 128 in general; 512 for decode batches too small to fill
// the GPU, so one block walks its context four times faster (latency, not bandwidth, bounds
// a few hundred keys).
constexpr int kThreads = 128, kDecodeThreads = 512;
// Block-table entries a block copies into shared memory before its walk (a sequence of up to
// kTableSmem * block_size tokens; longer ones read the table from global memory): a trip's
// K/V loads then wait for one round trip to memory, not two (the table entry, then the row).
// H200, bench_ops batch 64 ctx 1024: 66.4 -> 57.4 us; at the ~200 keys of bench_decode's batch
// 64 the kernel stays at ~20 us a call. Two keys per group per trip: four (more registers,
// fewer blocks per SM) measured 94.6 us at ctx 1024 and made bench_decode's batch 64 slower
// (1.79 against 1.55 ms).
constexpr int kKeysPerTrip = 2, kTableSmem = 1024;

template <bool kVec>
__global__ void kv_cache_write_kernel(bf16* __restrict__ kc, bf16* __restrict__ vc,
                                      const bf16* __restrict__ k, const bf16* __restrict__ v,
                                      const int32_t* __restrict__ slot_mapping, int64_t row) {
  const int64_t t = blockIdx.x;
  const int32_t slot = slot_mapping[t];
  if (slot < 0) return;  // padding token: nothing to store
  bf16* kd = kc + int64_t(slot) * row;
  bf16* vd = vc + int64_t(slot) * row;
  const bf16* ks = k + t * row;
  const bf16* vs = v + t * row;
  if constexpr (kVec) {
    for (int64_t j = threadIdx.x * 8; j < row; j += int64_t(blockDim.x) * 8) {
      store8(kd + j, load8(ks + j));
      store8(vd + j, load8(vs + j));
    }
  } else {
    for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
      kd[j] = ks[j];
      vd[j] = vs[j];
    }
  }
}

// Ops::qkv_bias_rope_cache: one thread per rope pair (j, j + half) of a q or k head, or pair
// of v elements, of one token, read from the token's packed q | k | v row. Rounded where the op
// sequence stores: after the bias (add_bias), after the rotation (rope); the cache gets those
// bf16 values (kv_cache_write).
__global__ void qkv_bias_rope_cache_kernel(bf16* __restrict__ q_out, const bf16* __restrict__ qkv,
                                           const bf16* __restrict__ q_bias,
                                           const bf16* __restrict__ k_bias,
                                           const bf16* __restrict__ v_bias,
                                           const float* __restrict__ cos_sin,
                                           const int32_t* __restrict__ positions,
                                           const int32_t* __restrict__ slot_mapping,
                                           bf16* __restrict__ kc, bf16* __restrict__ vc,
                                           int64_t total, int n_heads, int n_kv_heads,
                                           int head_dim) {
  const int half = head_dim / 2;
  const int uq = n_heads * half, uk = n_kv_heads * half, per_token = uq + 2 * uk;
  const int64_t qd = int64_t(n_heads) * head_dim, kvd = int64_t(n_kv_heads) * head_dim;
  const int64_t row_len = qd + 2 * kvd;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / per_token;
    int u = int(i % per_token);
    const int kind = u < uq ? 0 : u < uq + uk ? 1 : 2;  // q, k, v
    u -= kind == 0 ? 0 : kind == 1 ? uq : uq + uk;
    const int col = (u / half) * head_dim + u % half;  // first of the pair within q, k or v
    const bf16* src = qkv + t * row_len + (kind == 0 ? 0 : kind == 1 ? qd : qd + kvd);
    const bf16* bias = kind == 0 ? q_bias : kind == 1 ? k_bias : v_bias;
    float x1 = to_f(src[col]), x2 = to_f(src[col + half]);
    if (bias) {
      x1 = to_f(to_bf(x1 + to_f(bias[col])));
      x2 = to_f(to_bf(x2 + to_f(bias[col + half])));
    }
    bf16 o1 = to_bf(x1), o2 = to_bf(x2);
    if (kind != 2) {
      const float* row = cos_sin + int64_t(positions[t]) * head_dim;
      const float c = row[col % head_dim], sn = row[half + col % head_dim];
      float r1, r2;
      rope_pair(x1, x2, c, sn, r1, r2);
      o1 = to_bf(r1), o2 = to_bf(r2);
    }
    if (kind == 0) {
      q_out[t * qd + col] = o1;
      q_out[t * qd + col + half] = o2;
      continue;
    }
    const int32_t slot = slot_mapping[t];
    if (slot < 0) continue;  // padding token: nothing to store
    bf16* dst = (kind == 1 ? kc : vc) + int64_t(slot) * kvd;
    dst[col] = o1;
    dst[col + half] = o2;
  }
}

// The keys that token t attends to (its sequence's positions 0 .. its own) and where they lie:
// the sequence's block table, copied into sm_table first where it fits (kTableSmem).
struct KeyWalk {
  int n_keys;
  const int32_t* table;
};
template <int THREADS>
__device__ KeyWalk key_walk(int t, const int32_t* __restrict__ q_start,
                            const int32_t* __restrict__ context_len,
                            const int32_t* __restrict__ block_table, int max_blocks_per_seq,
                            int block_size, int num_seqs, int32_t* sm_table) {
  const int s = seq_of(q_start, num_seqs, t);
  const int q_len = q_start[s + 1] - q_start[s];
  KeyWalk w{context_len[s] - q_len + (t - q_start[s]) + 1,
            block_table + int64_t(s) * max_blocks_per_seq};
  const int table_len = (w.n_keys + block_size - 1) / block_size;
  if (table_len <= kTableSmem) {  // block-uniform
    for (int i = threadIdx.x; i < table_len; i += THREADS) sm_table[i] = w.table[i];
    __syncthreads();
    w.table = sm_table;
  }
  return w;
}

// One trip of a group: keys base + r * groups (r < kKeysPerTrip), this lane's 8 head-dim values
// of K and V at column offset col (zeros past n_keys, or where the lane holds no column).
__device__ __forceinline__ void load_trip(float (&kf)[kKeysPerTrip][8],
                                          float (&vf)[kKeysPerTrip][8],
                                          bool (&valid)[kKeysPerTrip], const KeyWalk& w, int base,
                                          int groups, bool active, int block_size, int64_t kv_row,
                                          int64_t col, const bf16* __restrict__ kc,
                                          const bf16* __restrict__ vc) {
#pragma unroll
  for (int r = 0; r < kKeysPerTrip; ++r) {
    const int kk = base + r * groups;
    valid[r] = kk < w.n_keys;
    if (valid[r] && active) {
      const int64_t slot = int64_t(w.table[kk / block_size]) * block_size + kk % block_size;
      unpack8(load8(kc + slot * kv_row + col), kf[r]);
      unpack8(load8(vc + slot * kv_row + col), vf[r]);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) kf[r][i] = vf[r][i] = 0.f;
    }
  }
}

// A block per (token, KV head, up to GB of that KV head's query heads): each group of TPK lanes
// holds one key at a time and runs the online softmax of the block's heads on it (q, state and
// accumulators of GB heads in registers), so a cached K/V row is read once for those heads.
// GB = 1 is a block per query head, for any head_dim up to 256 (lanes past head_dim hold
// zeros). The groups' states merge within a warp by shuffles, then across warps through shared
// memory.
template <int TPK, int THREADS, int GB>
__global__ void __launch_bounds__(THREADS, GB > 1 ? 2 : 1)
    paged_attention_kernel(bf16* __restrict__ out, const bf16* __restrict__ q,
                           const bf16* __restrict__ kc, const bf16* __restrict__ vc,
                           const int32_t* __restrict__ q_start,
                           const int32_t* __restrict__ context_len,
                           const int32_t* __restrict__ block_table, int max_blocks_per_seq,
                           int block_size, int num_seqs, int n_kv_heads, int group, int head_dim_,
                           float scale) {
  constexpr int kWarps = THREADS / 32, kGroupsPerWarp = 32 / TPK, kGroups = THREADS / TPK;
  // Several heads a block: head_dim is exactly TPK * 8, known at compile time (as a runtime
  // value it made the batch-64 decode attention 4-5% slower on an H200).
  const int head_dim = GB > 1 ? TPK * 8 : head_dim_;
  __shared__ float sm_m[kWarps][GB], sm_l[kWarps][GB];
  __shared__ float sm_acc[kWarps][GB][TPK * 8];
  __shared__ int32_t sm_table[kTableSmem];
  // Launched with PDL between the decode GEMV kernels: everything below reads their output.
  pdl_launch_dependents();
  pdl_wait();

  // The query heads of one KV head are adjacent blocks (GB = 1: the heads of one token are), so
  // the blocks that share a K/V row read it through L2 at about the same time.
  const int per_pair = (group + GB - 1) / GB, sub = int(blockIdx.x % unsigned(per_pair));
  const int pair = int(blockIdx.x / unsigned(per_pair));
  const int hk = pair % n_kv_heads, t = pair / n_kv_heads;
  const int H = n_kv_heads * group, h0 = hk * group + sub * GB, nh = min(GB, group - sub * GB);
  const KeyWalk w = key_walk<THREADS>(t, q_start, context_len, block_table, max_blocks_per_seq,
                                      block_size, num_seqs, sm_table);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // gw: the lane's group within its warp; lig: the lane within its group.
  const int gw = lane / TPK, lig = lane % TPK, d0 = lig * 8;
  const bool active = d0 < head_dim;
  float qv[GB][8], acc[GB][8], m[GB], l[GB];
#pragma unroll
  for (int h = 0; h < GB; ++h) {
    const bool mine = h < nh && active;
    if (mine) unpack8(load8(q + (int64_t(t) * H + h0 + h) * head_dim + d0), qv[h]);
#pragma unroll
    for (int i = 0; i < 8; ++i) qv[h][i] = mine ? qv[h][i] * scale : 0.f, acc[h][i] = 0.f;
    m[h] = -INFINITY, l[h] = 0.f;
  }
  const int64_t kv_row = int64_t(n_kv_heads) * head_dim;
  // kKeysPerTrip keys per group per trip, all loaded before any is used: the walk over a
  // short decode context is bound by load latency, not bandwidth.
  // Warp-uniform trip count: shuffles inside need every lane of the warp.
  for (int base = warp * kGroupsPerWarp; base < w.n_keys; base += kKeysPerTrip * kGroups) {
    float kf[kKeysPerTrip][8], vf[kKeysPerTrip][8];
    bool valid[kKeysPerTrip];
    load_trip(kf, vf, valid, w, base + gw, kGroups, active, block_size, kv_row,
              int64_t(hk) * head_dim + d0, kc, vc);
#pragma unroll
    for (int r = 0; r < kKeysPerTrip; ++r)
#pragma unroll
      for (int h = 0; h < GB; ++h)  // nh is the same in the whole block: the shuffles see all lanes
        if (h < nh) attend_key<TPK>(m[h], l[h], acc[h], qv[h], kf[r], vf[r], valid[r]);
  }
#pragma unroll
  for (int h = 0; h < GB; ++h) merge_warp_groups<TPK>(m[h], l[h], acc[h]);
  if (gw == 0) {
#pragma unroll
    for (int h = 0; h < GB; ++h) {
      if (lig == 0) sm_m[warp][h] = m[h], sm_l[warp][h] = l[h];
#pragma unroll
      for (int i = 0; i < 8; ++i) sm_acc[warp][h][d0 + i] = acc[h][i];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < nh * TPK * 8; idx += THREADS) {
    const int h = idx / (TPK * 8), d = idx % (TPK * 8);
    if (d >= head_dim) continue;
    float M = -INFINITY;
    for (int i = 0; i < kWarps; ++i)
      if (sm_l[i][h] > 0.f) M = fmaxf(M, sm_m[i][h]);
    float L = 0.f, r = 0.f;
    for (int i = 0; i < kWarps; ++i)
      if (sm_l[i][h] > 0.f) {
        const float e = __expf(sm_m[i][h] - M);
        L += sm_l[i][h] * e;
        r += sm_acc[i][h][d] * e;
      }
    out[(int64_t(t) * H + h0 + h) * head_dim + d] = to_bf(r / L);
  }
}

// Batches (decode or prefill) with enough (token, KV head) pairs to fill half the GPU take four
// query heads a block (at most 128 registers: two blocks per SM). H200, 0.5b (7 heads per KV
// head), bench_decode batch 64: 1.26 ms per step (prompt 1024: 2.06) against 1.39 (2.49) with
// two heads and 1.36 (2.50) with all seven in one block; bench_ops batch 64 ctx 1024: 41.4 us
// against 55.4 and 53.5.
constexpr int kGqaThreads = 256, kGqaHeadsPerBlock = 4;

template <int TPK, int THREADS, int GB>
void launch_heads(cudaStream_t st, void* out, const void* q, const PagedKv& c, const PagedBatch& b,
                  const AttnShape& s) {
  const int group = s.n_heads / s.n_kv_heads, per_pair = (group + GB - 1) / GB;
  launch_pdl(paged_attention_kernel<TPK, THREADS, GB>,
             dim3(unsigned(b.num_tokens * s.n_kv_heads * per_pair)), dim3(THREADS), 0, st,
             static_cast<bf16*>(out), static_cast<const bf16*>(q), static_cast<const bf16*>(c.k),
             static_cast<const bf16*>(c.v), b.q_start, b.context_len, b.block_table,
             b.max_blocks_per_seq, c.block_size, b.num_seqs, s.n_kv_heads, group, s.head_dim,
             s.scale);
}

// Four heads a block, for the shapes that take it: head_dim 64 or 128, 2 to 8 query heads per
// KV head (the presets have 2 and 7).
template <int TPK>
bool launch_gqa_for(cudaStream_t st, void* out, const void* q, const PagedKv& c,
                    const PagedBatch& b, const AttnShape& s) {
  const int group = s.n_heads / s.n_kv_heads;
  if (group < 2 || group > 8) return false;
  launch_heads<TPK, kGqaThreads, kGqaHeadsPerBlock>(st, out, q, c, b, s);
  return true;
}

constexpr int kPartThreads = 256;

// A thread block cluster per (token, head), one block per part (Hopper): each part leaves its
// state in its own shared memory, and after a cluster barrier the cluster's first block merges
// them through distributed shared memory. (A fence, an atomic counter and the parts' round trip
// through L2 to the head's last part took longer: H200, bench_ops batch 1 ctx 256, 4.19 ->
// 3.67 us per call.)
template <int TPK>
__global__ void __launch_bounds__(kPartThreads)
    paged_attention_parts_kernel(bf16* __restrict__ out, PartsArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int hd = TPK * 8;
  __shared__ __align__(16) float state[hd + 4];
  pdl_launch_dependents();
  // q and this step's cache rows come from the kernel before: attend_part waits for it.
  attend_part<TPK, kPartThreads, true>(a, int(blockIdx.x), [] { pdl_wait(); }, state);
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every part's state is in its block's shared memory
  if (cluster.block_rank() == 0 && threadIdx.x < TPK) {
    const int th = int(blockIdx.x) / a.parts;  // token * n_heads + head
    store8(out + int64_t(th) * hd + threadIdx.x * 8,
           combine_parts_with<false>(
               [&](int part) { return cluster.map_shared_rank(state, unsigned(part)); }, a.parts,
               int(threadIdx.x)));
  }
  cluster.sync();  // the first block is done reading the others' shared memory
#endif
}

template <int TPK>
void launch_parts(cudaStream_t st, void* out, const void* q, const PagedKv& c, const PagedBatch& b,
                  const AttnShape& s, int parts) {
  const PartsArgs a{static_cast<const bf16*>(q), static_cast<const bf16*>(c.k),
                    static_cast<const bf16*>(c.v), nullptr, b.q_start, b.context_len,
                    b.block_table, b.max_blocks_per_seq, c.block_size, b.num_seqs, s.n_heads,
                    s.n_kv_heads, parts, s.scale};
  launch_pdl_cluster(paged_attention_parts_kernel<TPK>,
                     dim3(unsigned(b.num_tokens * s.n_heads * parts)), dim3(kPartThreads), 0, st,
                     unsigned(parts), static_cast<bf16*>(out), a);
}

// A block per query head; decode batches too small to fill the GPU take wide blocks.
template <int TPK>
void launch_paged(cudaStream_t st, int sms, void* out, const void* q, const PagedKv& c,
                  const PagedBatch& b, const AttnShape& s) {
  const unsigned grid = unsigned(s.n_heads) * unsigned(b.num_tokens);
  if (b.max_q_len == 1 && grid < unsigned(2 * sms))
    launch_heads<TPK, kDecodeThreads, 1>(st, out, q, c, b, s);
  else
    launch_heads<TPK, kThreads, 1>(st, out, q, c, b, s);
}

// SIESTA_ATTENTION_GQA=0: a block per query head where four heads a block would run (to compare).
bool gqa_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SIESTA_ATTENTION_GQA");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

void check_shape(const AttnShape& s, const char* op) {
  require(s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0, [&] {
    return std::string(op) + ": n_heads (" + std::to_string(s.n_heads) +
           ") must be a positive multiple of n_kv_heads (" + std::to_string(s.n_kv_heads) + ")";
  });
  require(s.head_dim > 0 && s.head_dim % 8 == 0 && s.head_dim <= 256, [&] {
    return std::string(op) + ": head_dim must be a multiple of 8 in [8, 256] (got " +
           std::to_string(s.head_dim) + ")";
  });
}

}  // namespace

void CudaOps::kv_cache_write(const PagedKv& cache, const void* k, const void* v,
                             const PagedBatch& b, const AttnShape& s) {
  check_shape(s, "kv_cache_write");
  if (b.num_tokens <= 0) return;
  activate();
  const int64_t row = int64_t(s.n_kv_heads) * s.head_dim;
  auto* kc = static_cast<bf16*>(cache.k);
  auto* vc = static_cast<bf16*>(cache.v);
  auto* kp = static_cast<const bf16*>(k);
  auto* vp = static_cast<const bf16*>(v);
  if (aligned16(cache.k) && aligned16(cache.v) && aligned16(k) && aligned16(v))
    kv_cache_write_kernel<true><<<unsigned(b.num_tokens), 64, 0, stream_>>>(kc, vc, kp, vp,
                                                                           b.slot_mapping, row);
  else
    kv_cache_write_kernel<false><<<unsigned(b.num_tokens), 128, 0, stream_>>>(kc, vc, kp, vp,
                                                                             b.slot_mapping, row);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::qkv_bias_rope_cache(void* q_out, const void* qkv, const void* q_bias,
                                  const void* k_bias, const void* v_bias,
                                  const float* cos_sin_f32, const PagedKv& cache,
                                  const PagedBatch& b, const AttnShape& s) {
  check_shape(s, "qkv_bias_rope_cache");
  if (b.num_tokens <= 0) return;
  activate();
  const int64_t total =
      int64_t(b.num_tokens) * (s.n_heads + 2 * s.n_kv_heads) * (s.head_dim / 2);
  const int threads = 256;
  qkv_bias_rope_cache_kernel<<<grid_for(total, threads, int64_t(sm_count_) * 16), threads, 0,
                               stream_>>>(
      static_cast<bf16*>(q_out), static_cast<const bf16*>(qkv), static_cast<const bf16*>(q_bias),
      static_cast<const bf16*>(k_bias), static_cast<const bf16*>(v_bias), cos_sin_f32,
      b.positions, b.slot_mapping, static_cast<bf16*>(cache.k), static_cast<bf16*>(cache.v),
      total, s.n_heads, s.n_kv_heads, s.head_dim);
  SIESTA_CUDA_LAUNCH_CHECK();
}

void CudaOps::paged_attention(void* out, const void* q, const PagedKv& cache, const PagedBatch& b,
                              const AttnShape& s) {
  check_shape(s, "paged_attention");
  require(cache.block_size > 0, "paged_attention: block_size must be > 0");
  require(aligned16(out) && aligned16(q) && aligned16(cache.k) && aligned16(cache.v),
          "paged_attention: out, q and the cache must be 16-byte aligned");
  if (b.num_tokens <= 0) return;
  require(int64_t(b.num_tokens) * s.n_heads < (int64_t(1) << 31),
          "paged_attention: num_tokens * n_heads must be < 2^31");
  activate();
  // Decode batches too small to fill half the GPU: in parts (see the top). The part count
  // does not depend on the context length, so a captured graph stays right as contexts grow.
  const int pairs = b.num_tokens * s.n_heads;
  if (hopper_ && b.max_q_len == 1 && (s.head_dim == 64 || s.head_dim == 128) &&
      2 * pairs <= sm_count_) {
    static_assert(kMaxParts <= 8);  // a part per block of a cluster: 8 is the portable maximum
    const int parts = std::min(kMaxParts, sm_count_ / pairs);
    if (s.head_dim == 64) launch_parts<8>(stream_, out, q, cache, b, s, parts);
    else launch_parts<16>(stream_, out, q, cache, b, s, parts);
    return;
  }
  // Batches whose (token, KV head) pairs fill half the GPU, decode and prefill alike: a block
  // per pair and four of its query heads.
  if (2 * b.num_tokens * s.n_kv_heads >= sm_count_ && gqa_enabled()) {
    if (s.head_dim == 64 && launch_gqa_for<8>(stream_, out, q, cache, b, s)) return;
    if (s.head_dim == 128 && launch_gqa_for<16>(stream_, out, q, cache, b, s)) return;
  }
  const int per_key = s.head_dim / 8;  // threads holding one key row
  if (per_key <= 1) launch_paged<1>(stream_, sm_count_, out, q, cache, b, s);
  else if (per_key <= 2) launch_paged<2>(stream_, sm_count_, out, q, cache, b, s);
  else if (per_key <= 4) launch_paged<4>(stream_, sm_count_, out, q, cache, b, s);
  else if (per_key <= 8) launch_paged<8>(stream_, sm_count_, out, q, cache, b, s);
  else if (per_key <= 16) launch_paged<16>(stream_, sm_count_, out, q, cache, b, s);
  else launch_paged<32>(stream_, sm_count_, out, q, cache, b, s);
}

}  // namespace siesta::kernels::cuda
