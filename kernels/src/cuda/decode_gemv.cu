// Decode-sized matrix products: y[m, :] = x[m, :] · W^T for m <= 8 tokens, where the whole
// cost is reading W once. cuBLAS picks GEMM tiles for these shapes that leave most of HBM idle
// and needs separate kernels for norm, bias, rope, cache write and SwiGLU around it; here one
// kernel streams W and does the rest in its prologue and epilogue:
//   gemv_kernel          y = x W^T (+ y)           (Ops::gemm for small m, o_proj/down/lm_head)
//   qkv_kernel           rmsnorm -> q|k|v -> bias -> rope -> q out, K/V into the paged cache
//   gate_up_kernel       rmsnorm -> gate|up -> SwiGLU
// Layout of the work: a block stages the (normalised) tokens in shared memory as bf16, rounded
// exactly where the op-by-op sequence rounds; each warp then owns a "unit" of two weight rows
// (two rows so that a rope pair, or a gate row and its up row, meet in one warp), every lane
// keeping kUnroll 16-byte loads of each row in flight. All three launch with PDL (pdl.cuh): the
// first unit's rows are prefetched to L2 before waiting on the previous kernel.
#include <algorithm>
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kMaxTokens = 8;
constexpr int kUnroll = 4;
constexpr int kMaxThreads = 256;
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

// xs[m, :] = x[m, :] (norm_w null) or rmsnorm(x[m, :]) * norm_w rounded to bf16, m < M.
template <int M>
__device__ void stage_tokens(bf16* xs, const bf16* __restrict__ x, int64_t ldx, int k,
                             const bf16* __restrict__ norm_w, float eps) {
  __shared__ float rstd[kMaxTokens];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (norm_w) {
    for (int m = warp; m < M; m += warps) {
      float ss = 0.f;
      for (int j = lane * 8; j < k; j += 256) {
        float a[8];
        unpack8(load8(x + m * ldx + j), a);
#pragma unroll
        for (int i = 0; i < 8; ++i) ss += a[i] * a[i];
      }
      ss = warp_sum(ss);
      if (lane == 0) rstd[m] = rsqrtf(ss / float(k) + eps);
    }
    __syncthreads();
  }
  const int chunks = k / 8;
  for (int idx = threadIdx.x; idx < M * chunks; idx += blockDim.x) {
    const int m = idx / chunks, c = idx % chunks;
    Bf16x8 v = load8(x + m * ldx + c * 8);
    if (norm_w) {
      float a[8], w[8];
      unpack8(v, a);
      unpack8(load8(norm_w + c * 8), w);
      const float r = rstd[m];
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = a[i] * r * w[i];
      v = pack8(a);
    }
    store8(xs + m * k + c * 8, v);
  }
  __syncthreads();
}

// a[m] = <wa, xs[m]>, b[m] = <wb, xs[m]> over k (a multiple of 8), summed over the warp.
template <int M>
__device__ __forceinline__ void dot2(const bf16* __restrict__ wa, const bf16* __restrict__ wb,
                                     const bf16* xs, int k, int lane, float (&a)[M],
                                     float (&b)[M]) {
#pragma unroll
  for (int m = 0; m < M; ++m) a[m] = b[m] = 0.f;
  const int chunks = k / 8;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    Bf16x8 va[kUnroll], vb[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * 32;
      if (c < chunks) {
        va[u] = load_weight8(wa + c * 8);
        vb[u] = load_weight8(wb + c * 8);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * 32;
      if (c < chunks) {
        float fa[8], fb[8];
        unpack8(va[u], fa);
        unpack8(vb[u], fb);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[8];
          unpack8(load8(xs + m * k + c * 8), xf);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            a[m] += fa[i] * xf[i];
            b[m] += fb[i] * xf[i];
          }
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    a[m] = warp_sum(a[m]);
    b[m] = warp_sum(b[m]);
  }
}

__device__ __forceinline__ void prefetch_rows(const bf16* ra, const bf16* rb, int k, int lane) {
  prefetch_l2(ra, int64_t(k) * 2, lane, 32);
  prefetch_l2(rb, int64_t(k) * 2, lane, 32);
}

template <int M>
__global__ void __launch_bounds__(kMaxThreads)
    gemv_kernel(bf16* __restrict__ y, int64_t ldy, const bf16* __restrict__ x, int64_t ldx,
                const bf16* __restrict__ w, int64_t ldw, int n, int k, bool accumulate) {
  extern __shared__ Bf16x8 smem_tokens[];
  bf16* xs = reinterpret_cast<bf16*>(smem_tokens);
  pdl_launch_dependents();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int units = (n + 1) / 2;
  const int first = blockIdx.x * warps + warp;
  auto rows = [&](int u, const bf16*& ra, const bf16*& rb) {
    ra = w + int64_t(2 * u) * ldw;
    rb = w + int64_t(min(2 * u + 1, n - 1)) * ldw;  // odd n: the last unit reads a row twice
  };
  if (first < units) {
    const bf16 *ra, *rb;
    rows(first, ra, rb);
    prefetch_rows(ra, rb, k, lane);
  }
  pdl_wait();
  stage_tokens<M>(xs, x, ldx, k, nullptr, 0.f);
  for (int u = first; u < units; u += gridDim.x * warps) {
    const bf16 *ra, *rb;
    rows(u, ra, rb);
    float a[M], b[M];
    dot2<M>(ra, rb, xs, k, lane, a, b);
    if (lane == 0) {
      const int r = 2 * u;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        bf16* out = y + m * ldy + r;
        out[0] = to_bf(a[m] + (accumulate ? to_f(out[0]) : 0.f));
        if (r + 1 < n) out[1] = to_bf(b[m] + (accumulate ? to_f(out[1]) : 0.f));
      }
    }
  }
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

template <int M>
__global__ void __launch_bounds__(kMaxThreads) qkv_kernel(QkvParams p) {
  extern __shared__ Bf16x8 smem_tokens[];
  bf16* xs = reinterpret_cast<bf16*>(smem_tokens);
  pdl_launch_dependents();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hd = p.head_dim, half = hd / 2;
  const int uq = p.n_heads * half, uk = p.n_kv_heads * half, uv = p.n_kv_heads * half;
  const int units = uq + uk + uv;
  // Unit u -> weight matrix, its two rows, and what the epilogue does with them.
  enum Kind { Q, K, V };
  auto unit = [&](int u, Kind& kind, int& r0, int& r1, const bf16*& W, const bf16*& B) {
    if (u < uq + uk) {
      kind = u < uq ? Q : K;
      const int v = kind == Q ? u : u - uq;
      r0 = (v / half) * hd + v % half;  // rope pair (j, j + half) of one head
      r1 = r0 + half;
      W = kind == Q ? p.wq : p.wk;
      B = kind == Q ? p.bq : p.bk;
    } else {
      kind = V;
      r0 = 2 * (u - uq - uk);
      r1 = r0 + 1;
      W = p.wv;
      B = p.bv;
    }
  };
  const int first = blockIdx.x * warps + warp;
  if (first < units) {
    Kind kind;
    int r0, r1;
    const bf16 *W, *B;
    unit(first, kind, r0, r1, W, B);
    prefetch_rows(W + int64_t(r0) * p.d, W + int64_t(r1) * p.d, p.d, lane);
  }
  pdl_wait();
  stage_tokens<M>(xs, p.x, p.d, p.d, p.norm_w, p.eps);
  const int64_t q_row = int64_t(p.n_heads) * hd, kv_row = int64_t(p.n_kv_heads) * hd;
  for (int u = first; u < units; u += gridDim.x * warps) {
    Kind kind;
    int r0, r1;
    const bf16 *W, *B;
    unit(u, kind, r0, r1, W, B);
    float a[M], b[M];
    dot2<M>(W + int64_t(r0) * p.d, W + int64_t(r1) * p.d, xs, p.d, lane, a, b);
    if (lane != 0) continue;
    const float bias0 = B ? to_f(B[r0]) : 0.f, bias1 = B ? to_f(B[r1]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      // Rounded where the op sequence rounds: after the product, after the bias.
      float v0 = round_bf(a[m]), v1 = round_bf(b[m]);
      if (B) v0 = round_bf(v0 + bias0), v1 = round_bf(v1 + bias1);
      if (kind == V) {
        const int32_t slot = p.slots[m];
        if (slot < 0) continue;
        p.v_cache[slot * kv_row + r0] = to_bf(v0);
        p.v_cache[slot * kv_row + r1] = to_bf(v1);
        continue;
      }
      const int j = r0 % hd;
      const float* cs = p.cos_sin + int64_t(p.positions[m]) * hd;
      const float c = cs[j], s = cs[half + j];
      const bf16 o0 = to_bf(v0 * c - v1 * s), o1 = to_bf(v1 * c + v0 * s);
      if (kind == Q) {
        p.q_out[m * q_row + r0] = o0;
        p.q_out[m * q_row + r1] = o1;
      } else {
        const int32_t slot = p.slots[m];
        if (slot < 0) continue;
        p.k_cache[slot * kv_row + r0] = o0;
        p.k_cache[slot * kv_row + r1] = o1;
      }
    }
  }
}

template <int M>
__global__ void __launch_bounds__(kMaxThreads)
    gate_up_kernel(bf16* __restrict__ h, const bf16* __restrict__ x,
                   const bf16* __restrict__ norm_w, float eps, const bf16* __restrict__ wg,
                   const bf16* __restrict__ wu, int d, int inter) {
  extern __shared__ Bf16x8 smem_tokens[];
  bf16* xs = reinterpret_cast<bf16*>(smem_tokens);
  pdl_launch_dependents();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int first = blockIdx.x * warps + warp;
  if (first < inter) prefetch_rows(wg + int64_t(first) * d, wu + int64_t(first) * d, d, lane);
  pdl_wait();
  stage_tokens<M>(xs, x, d, d, norm_w, eps);
  for (int u = first; u < inter; u += gridDim.x * warps) {
    float g[M], up[M];
    dot2<M>(wg + int64_t(u) * d, wu + int64_t(u) * d, xs, d, lane, g, up);
    if (lane != 0) continue;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float gv = round_bf(g[m]), uv = round_bf(up[m]);
      h[int64_t(m) * inter + u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
    }
  }
}

// Threads and blocks for `units` two-row units: enough warps to cover every SM, at most
// `per_sm` blocks per SM (the rest loop), never more blocks than units need.
struct Shape {
  unsigned blocks, threads;
};
Shape shape_for(int64_t units, int sms) {
  const int threads = units >= int64_t(sms) * 16 ? 256 : 128;
  const int64_t warps = threads / 32;
  const int64_t need = (units + warps - 1) / warps;
  return {unsigned(std::max<int64_t>(1, std::min<int64_t>(need, int64_t(sms) * 4))),
          unsigned(threads)};
}

template <template <int> class Launch, class... Args>
void dispatch_tokens(int m, Args&&... args) {
  switch (m) {
    case 1: return Launch<1>::run(args...);
    case 2: return Launch<2>::run(args...);
    case 3: return Launch<3>::run(args...);
    case 4: return Launch<4>::run(args...);
    case 5: return Launch<5>::run(args...);
    case 6: return Launch<6>::run(args...);
    case 7: return Launch<7>::run(args...);
    case 8: return Launch<8>::run(args...);
    default: break;
  }
  throw KernelError("decode gemv: " + std::to_string(m) + " tokens, allowed 1.." +
                    std::to_string(kMaxTokens));
}

template <int M>
struct LaunchGemv {
  static void run(const GemmArgs& g, int sms, cudaStream_t st) {
    const Shape sh = shape_for((g.n + 1) / 2, sms);
    launch_pdl(gemv_kernel<M>, dim3(sh.blocks), dim3(sh.threads), size_t(M) * g.k * 2, st,
               static_cast<bf16*>(g.c), g.ldc, static_cast<const bf16*>(g.a), g.lda,
               static_cast<const bf16*>(g.b), g.ldb, int(g.n), int(g.k), g.beta != 0.f);
  }
};
template <int M>
struct LaunchQkv {
  static void run(const QkvParams& p, int sms, cudaStream_t st) {
    const int64_t units = int64_t(p.n_heads + 2 * p.n_kv_heads) * (p.head_dim / 2);
    const Shape sh = shape_for(units, sms);
    launch_pdl(qkv_kernel<M>, dim3(sh.blocks), dim3(sh.threads), size_t(M) * p.d * 2, st, p);
  }
};
template <int M>
struct LaunchGateUp {
  static void run(bf16* h, const bf16* x, const bf16* nw, float eps, const bf16* wg,
                  const bf16* wu, int d, int inter, int sms, cudaStream_t st) {
    const Shape sh = shape_for(inter, sms);
    launch_pdl(gate_up_kernel<M>, dim3(sh.blocks), dim3(sh.threads), size_t(M) * d * 2, st, h,
               x, nw, eps, wg, wu, d, inter);
  }
};

int max_tokens_for(int64_t k) {
  if (k <= 0 || k % 8 != 0 || k >= (int64_t(1) << 30)) return 0;
  return int(std::min<int64_t>(kMaxTokens, int64_t(kSmemLimit) / (k * 2)));
}

}  // namespace

bool CudaOps::gemv(const GemmArgs& g) {
  if (g.trans_a || !g.trans_b || g.c_dtype != DType::BF16 || g.alpha != 1.f ||
      (g.beta != 0.f && g.beta != 1.f) || g.m < 1 || g.m > max_tokens_for(g.k) ||
      g.n >= (int64_t(1) << 31) || g.lda % 8 != 0 || g.ldb % 8 != 0 || !aligned16(g.a) ||
      !aligned16(g.b))
    return false;
  activate();
  dispatch_tokens<LaunchGemv>(int(g.m), g, sm_count_, stream_);
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
  dispatch_tokens<LaunchQkv>(n, p, sm_count_, stream_);
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
                                int(d), int(inter), sm_count_, stream_);
}

}  // namespace siesta::kernels::cuda
