// Decode-sized matrix products: y[m, :] = x[m, :] · W^T for m <= 8 tokens, where the whole
// cost is reading W once. cuBLAS picks GEMM tiles for these shapes that leave most of HBM idle
// and needs separate kernels for norm, bias, rope, cache write and SwiGLU around it; here one
// kernel streams W and does the rest in its prologue and epilogue:
//   gemv_kernel          y = x W^T (+ y)           (Ops::gemm for small m, o_proj/down/lm_head)
//   qkv_kernel           rmsnorm -> q|k|v -> bias -> rope -> q out, K/V into the paged cache
//   gate_up_kernel       rmsnorm -> gate|up -> SwiGLU
// Layout of the work: a block stages the (normalised) tokens in shared memory as bf16, rounded
// exactly where the op-by-op sequence rounds; a "unit" of two weight rows (two so that a rope
// pair, or a gate row and its up row, meet in one place) goes to one warp, or to S warps that
// split a long row, each lane holding its chunks of both rows in registers. All three launch
// with PDL (pdl.cuh) and load their rows before waiting on the previous kernel, meant to
// overlap one kernel's weight reads with the tail of the one before (run_units says how far
// that got on an H200).
#include <algorithm>
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kMaxTokens = 8;
constexpr int kChunks = 4;        // 16-byte chunks of each row a lane holds per round
constexpr int kThreads = 256;     // 8 warps per block
constexpr size_t kSmemLimit = 48 * 1024;  // staged tokens; the default limit, no opt-in needed

// Weights are read once per step: stream them past L1.
__device__ __forceinline__ Bf16x8 load_weight8(const bf16* p) {
  Bf16x8 v;
  uint32_t* r = reinterpret_cast<uint32_t*>(&v);
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "l"(p));
  return v;
}

__device__ __forceinline__ float round_bf(float x) { return to_f(to_bf(x)); }

// xs[m, :] = x[m, :] (norm_w null) or rmsnorm(x[m, :]) * norm_w rounded to bf16 for m < n;
// zeros for n <= m < M (kernels are compiled for M tokens and called with n). One pass over
// global memory; the norm statistics are summed in a fixed order (no atomics), so a step's
// output never depends on scheduling.
template <int M>
__device__ void stage_tokens(bf16* xs, const bf16* __restrict__ x, int64_t ldx, int n, int k,
                             const bf16* __restrict__ norm_w, float eps) {
  __shared__ float ss_warp[kThreads / 32][M];
  __shared__ float rstd[M];
  const int chunks = k / 8, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ss[m] = 0.f;
  for (int idx = threadIdx.x; idx < M * chunks; idx += blockDim.x) {
    const int m = idx / chunks, c = idx % chunks;
    Bf16x8 v{};
    if (m < n) {
      v = load8(x + m * ldx + c * 8);
      if (norm_w) {
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
  if (norm_w) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float w = warp_sum(ss[m]);
      if (lane == 0) ss_warp[warp][m] = w;
    }
  }
  __syncthreads();
  if (!norm_w) return;
  if (threadIdx.x < M) {
    float t = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) t += ss_warp[w][threadIdx.x];
    rstd[threadIdx.x] = rsqrtf(t / float(k) + eps);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < n * chunks; idx += blockDim.x) {
    const int m = idx / chunks, c = idx % chunks;
    const float r = rstd[m];
    float a[8], w[8];
    unpack8(load8(xs + m * k + c * 8), a);
    unpack8(load8(norm_w + c * 8), w);
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] = a[i] * r * w[i];
    store8(xs + m * k + c * 8, pack8(a));
  }
  __syncthreads();
}

// Two weight rows of one unit as a lane holds them: chunks c0 + i * step of each row.
struct RowRegs {
  Bf16x8 a[kChunks], b[kChunks];
};

__device__ __forceinline__ void load_rows(RowRegs& r, const bf16* wa, const bf16* wb, int c0,
                                          int step, int chunks) {
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = c0 + i * step;
    if (c < chunks) {
      r.a[i] = load_weight8(wa + c * 8);
      r.b[i] = load_weight8(wb + c * 8);
    }
  }
}

template <int M>
__device__ __forceinline__ void fma_rows(float (&a)[M], float (&b)[M], const RowRegs& r,
                                         const bf16* xs, int k, int c0, int step, int chunks) {
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = c0 + i * step;
    if (c < chunks) {
      float fa[8], fb[8];
      unpack8(r.a[i], fa);
      unpack8(r.b[i], fb);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[8];
        unpack8(load8(xs + m * k + c * 8), xf);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          a[m] += fa[j] * xf[j];
          b[m] += fb[j] * xf[j];
        }
      }
    }
  }
}

// The loop of every decode kernel. Units of two rows go to groups of S warps (the S slices of
// a unit split its chunks, so that for rows up to kChunks * 8 * 32 * S elements a lane holds
// every chunk it needs in registers at once). The grid has a group for every unit, so a
// warp's rows are loaded once, first thing: before pdl_wait (no kernel of the step writes
// weights), meant to overlap the kernel before. On an H200 these kernels still take ~4 us each
// in a decode graph where a chain of kernels that only load 1.5 MiB before the wait takes 1 us
// (bench_ops "kernel chain" rows), and L2-resident weights are barely faster: the remaining
// cost is not the weight reads and is not found yet. Policy provides
//   rows(u, wa, wb)          the unit's two rows
//   finish(u, n, a, b)       called by one lane with the unit's full sums for tokens < n
template <int M, class Policy>
__device__ __forceinline__ void run_units(const Policy& pol, int units, int n, int k, bf16* xs,
                                          const bf16* x, int64_t ldx, const bf16* norm_w,
                                          float eps, int S) {
  __shared__ float part[kThreads / 32][2 * M];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int groups = kThreads / 32 / S, g = warp / S, slice = warp % S;
  const int chunks = k / 8, step = 32 * S, c0 = slice * 32 + lane;
  const int u = blockIdx.x * groups + g;
  const bool valid = u < units;
  RowRegs cur;
  const bf16 *wa = nullptr, *wb = nullptr;
  if (valid) {
    pol.rows(u, wa, wb);
    load_rows(cur, wa, wb, c0, step, chunks);
  }
  pdl_wait();
  stage_tokens<M>(xs, x, ldx, n, k, norm_w, eps);
  float a[M], b[M];
#pragma unroll
  for (int m = 0; m < M; ++m) a[m] = b[m] = 0.f;
  if (valid) {
    fma_rows<M>(a, b, cur, xs, k, c0, step, chunks);
    // Rows longer than one round: the rest, loaded then used.
    for (int c = c0 + kChunks * step; c < chunks; c += kChunks * step) {
      load_rows(cur, wa, wb, c, step, chunks);
      fma_rows<M>(a, b, cur, xs, k, c, step, chunks);
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    a[m] = warp_sum(a[m]);
    b[m] = warp_sum(b[m]);
  }
  if (S > 1) {
    if (lane == 0)
#pragma unroll
      for (int m = 0; m < M; ++m) part[warp][m] = a[m], part[warp][M + m] = b[m];
    __syncthreads();
    if (slice == 0 && lane == 0)
      for (int s2 = 1; s2 < S; ++s2)
#pragma unroll
        for (int m = 0; m < M; ++m) a[m] += part[warp + s2][m], b[m] += part[warp + s2][M + m];
  }
  if (slice == 0 && lane == 0 && valid) pol.finish(u, n, a, b);
}

// Warps per unit: enough that a lane holds at most kChunks chunks of a row; at most 8 (the
// block). Longer rows take more than one round.
int slices_for(int64_t k) {
  const int64_t chunks = k / 8;
  int s = 1;
  while (s < kThreads / 32 && chunks > int64_t(32) * kChunks * s) s *= 2;
  return s;
}

template <int M>
struct GemvPolicy {
  bf16* y;
  int64_t ldy;
  const bf16* w;
  int64_t ldw;
  int n_rows;
  bool accumulate;
  __device__ __forceinline__ void rows(int u, const bf16*& ra, const bf16*& rb) const {
    ra = w + int64_t(2 * u) * ldw;
    rb = w + int64_t(min(2 * u + 1, n_rows - 1)) * ldw;  // odd n: the last unit reads a row twice
  }
  __device__ __forceinline__ void finish(int u, int n, const float (&a)[M], const float (&b)[M]) const {
    const int r = 2 * u;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      bf16* out = y + m * ldy + r;
      out[0] = to_bf(a[m] + (accumulate ? to_f(out[0]) : 0.f));
      if (r + 1 < n_rows) out[1] = to_bf(b[m] + (accumulate ? to_f(out[1]) : 0.f));
    }
  }
};

template <int M>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(GemvPolicy<M> pol, const bf16* __restrict__ x, int64_t ldx, int n, int k, int S) {
  extern __shared__ Bf16x8 smem_tokens[];
  pdl_launch_dependents();
  run_units<M>(pol, (pol.n_rows + 1) / 2, n, k, reinterpret_cast<bf16*>(smem_tokens), x, ldx,
               nullptr, 0.f, S);
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

// Units: rope pairs (j, j + half) of every q head, then of every k head, then consecutive row
// pairs of v.
template <int M>
struct QkvPolicy {
  QkvParams p;
  __device__ __forceinline__ void unit(int u, int& kind, int& r0, int& r1) const {  // kind 0 q, 1 k, 2 v
    const int half = p.head_dim / 2, uq = p.n_heads * half, uk = p.n_kv_heads * half;
    if (u < uq + uk) {
      kind = u < uq ? 0 : 1;
      const int v = kind == 0 ? u : u - uq;
      r0 = (v / half) * p.head_dim + v % half;
      r1 = r0 + half;
    } else {
      kind = 2;
      r0 = 2 * (u - uq - uk);
      r1 = r0 + 1;
    }
  }
  __device__ __forceinline__ void rows(int u, const bf16*& ra, const bf16*& rb) const {
    int kind, r0, r1;
    unit(u, kind, r0, r1);
    const bf16* W = kind == 0 ? p.wq : kind == 1 ? p.wk : p.wv;
    ra = W + int64_t(r0) * p.d;
    rb = W + int64_t(r1) * p.d;
  }
  __device__ __forceinline__ void finish(int u, int n, const float (&a)[M], const float (&b)[M]) const {
    int kind, r0, r1;
    unit(u, kind, r0, r1);
    const bf16* B = kind == 0 ? p.bq : kind == 1 ? p.bk : p.bv;
    const float bias0 = B ? to_f(B[r0]) : 0.f, bias1 = B ? to_f(B[r1]) : 0.f;
    const int hd = p.head_dim, half = hd / 2;
    const int64_t q_row = int64_t(p.n_heads) * hd, kv_row = int64_t(p.n_kv_heads) * hd;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      // Rounded where the op sequence rounds: after the product, after the bias.
      float v0 = round_bf(a[m]), v1 = round_bf(b[m]);
      if (B) v0 = round_bf(v0 + bias0), v1 = round_bf(v1 + bias1);
      const int32_t slot = p.slots[m];
      if (kind == 2) {
        if (slot < 0) continue;
        p.v_cache[slot * kv_row + r0] = to_bf(v0);
        p.v_cache[slot * kv_row + r1] = to_bf(v1);
        continue;
      }
      const int j = r0 % hd;
      const float* cs = p.cos_sin + int64_t(p.positions[m]) * hd;
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
__global__ void __launch_bounds__(kThreads) qkv_kernel(QkvParams p, int n, int S) {
  extern __shared__ Bf16x8 smem_tokens[];
  pdl_launch_dependents();
  run_units<M>(QkvPolicy<M>{p}, qkv_units(p), n, p.d, reinterpret_cast<bf16*>(smem_tokens), p.x, p.d,
               p.norm_w, p.eps, S);
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
  __device__ __forceinline__ void finish(int u, int n, const float (&g)[M], const float (&up)[M]) const {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= n) break;
      const float gv = round_bf(g[m]), uv = round_bf(up[m]);
      h[int64_t(m) * inter + u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
    }
  }
};

template <int M>
__global__ void __launch_bounds__(kThreads)
    gate_up_kernel(GateUpPolicy<M> pol, const bf16* __restrict__ x,
                   const bf16* __restrict__ norm_w, float eps, int n, int S) {
  extern __shared__ Bf16x8 smem_tokens[];
  pdl_launch_dependents();
  run_units<M>(pol, pol.inter, n, pol.d, reinterpret_cast<bf16*>(smem_tokens), x, pol.d, norm_w,
               eps, S);
}

// One group of S warps per unit.
unsigned blocks_for(int64_t units, int S) {
  const int64_t groups = kThreads / 32 / S;
  return unsigned(std::max<int64_t>(1, (units + groups - 1) / groups));
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
  static void run(int n, const GemmArgs& g, cudaStream_t st) {
    const int S = slices_for(g.k);
    GemvPolicy<M> pol{static_cast<bf16*>(g.c), g.ldc, static_cast<const bf16*>(g.b), g.ldb,
                      int(g.n), g.beta != 0.f};
    launch_pdl(gemv_kernel<M>, dim3(blocks_for((g.n + 1) / 2, S)), dim3(kThreads),
               size_t(M) * g.k * 2, st, pol, static_cast<const bf16*>(g.a), g.lda, n, int(g.k),
               S);
  }
};
template <int M>
struct LaunchQkv {
  static void run(int n, const QkvParams& p, cudaStream_t st) {
    const int S = slices_for(p.d);
    launch_pdl(qkv_kernel<M>, dim3(blocks_for(qkv_units(p), S)), dim3(kThreads),
               size_t(M) * p.d * 2, st, p, n, S);
  }
};
template <int M>
struct LaunchGateUp {
  static void run(int n, bf16* h, const bf16* x, const bf16* nw, float eps, const bf16* wg,
                  const bf16* wu, int d, int inter, cudaStream_t st) {
    const int S = slices_for(d);
    launch_pdl(gate_up_kernel<M>, dim3(blocks_for(inter, S)), dim3(kThreads),
               size_t(M) * d * 2, st, GateUpPolicy<M>{h, wg, wu, d, inter}, x, nw, eps, n, S);
  }
};

// Tokens are staged for the compiled M (1, 2, 4, 8) that holds them.
int max_tokens_for(int64_t k) {
  if (k <= 0 || k % 8 != 0 || k >= (int64_t(1) << 30)) return 0;
  const int64_t fit = int64_t(kSmemLimit) / (k * 2);
  for (int m : {8, 4, 2, 1})
    if (m <= fit) return m;
  return 0;
}

}  // namespace

bool CudaOps::gemv(const GemmArgs& g) {
  if (g.trans_a || !g.trans_b || g.c_dtype != DType::BF16 || g.alpha != 1.f ||
      (g.beta != 0.f && g.beta != 1.f) || g.m < 1 || g.m > max_tokens_for(g.k) ||
      g.n >= (int64_t(1) << 31) || g.lda % 8 != 0 || g.ldb % 8 != 0 || !aligned16(g.a) ||
      !aligned16(g.b))
    return false;
  activate();
  dispatch_tokens<LaunchGemv>(int(g.m), g, stream_);
  return true;
}

int CudaOps::fused_decode_max_tokens(int64_t hidden) const { return max_tokens_for(hidden); }

void CudaOps::norm_qkv_rope_cache(void* q_out, const void* x, const void* norm_w, float eps,
                                  int64_t d, const QkvWeights& w, const float* cos_sin_f32,
                                  const PagedKv& cache, const PagedBatch& b, const AttnShape& s) {
  const int n = b.num_tokens;
  require(n >= 0 && n <= max_tokens_for(d),
          "norm_qkv_rope_cache: " + std::to_string(n) + " tokens with hidden size " +
              std::to_string(d) + ", allowed 0.." + std::to_string(max_tokens_for(d)) +
              " (fused_decode_max_tokens)");
  require(s.n_heads > 0 && s.n_kv_heads > 0 && s.head_dim > 0 && s.head_dim % 2 == 0,
          "norm_qkv_rope_cache: heads must be > 0 and head_dim even (got " +
              std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " heads, head_dim " +
              std::to_string(s.head_dim) + ")");
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
  dispatch_tokens<LaunchQkv>(n, p, stream_);
}

void CudaOps::norm_gate_up(void* h, const void* x, const void* norm_w, float eps,
                           const void* gate_w, const void* up_w, int64_t n, int64_t d,
                           int64_t inter) {
  require(n >= 0 && n <= max_tokens_for(d),
          "norm_gate_up: " + std::to_string(n) + " tokens with hidden size " + std::to_string(d) +
              ", allowed 0.." + std::to_string(max_tokens_for(d)) + " (fused_decode_max_tokens)");
  require(inter > 0 && inter < (int64_t(1) << 31), "norm_gate_up: intermediate size must be in "
                                                   "[1, 2^31) (got " + std::to_string(inter) + ")");
  require(aligned16(x) && aligned16(norm_w) && aligned16(gate_w) && aligned16(up_w),
          "norm_gate_up: x and the weights must be 16-byte aligned");
  if (n == 0) return;
  activate();
  dispatch_tokens<LaunchGateUp>(int(n), static_cast<bf16*>(h), static_cast<const bf16*>(x),
                                static_cast<const bf16*>(norm_w), eps,
                                static_cast<const bf16*>(gate_w), static_cast<const bf16*>(up_w),
                                int(d), int(inter), stream_);
}

}  // namespace siesta::kernels::cuda
