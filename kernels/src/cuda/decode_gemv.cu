// Decode-sized matrix products: y[m, :] = x[m, :] · W^T for m <= 8 tokens, where the whole
// cost is reading W once. cuBLAS picks GEMM tiles for these shapes that leave most of HBM idle
// and needs separate kernels for norm, bias, rope, cache write and SwiGLU around it; here one
// kernel streams W and does the rest in its prologue and epilogue:
//   gemv_kernel          y = x W^T (+ y)           (Ops::gemm for few rows: o_proj, down)
//   qkv_kernel           rmsnorm -> q|k|v -> bias -> rope -> q out, K/V into the paged cache
//   gate_up_kernel       rmsnorm -> gate|up -> SwiGLU
// How they stream W (units, items, the producer thread and its ring of shared-memory slots) is
// in decode_stream.cuh; decode_layers.cu chains the same pieces through every layer of a step.
// Every kernel is launched with PDL (pdl.cuh): the producer streams weights (which no kernel of
// a step writes) and the consumers load step metadata (positions, cache slots, rope rows, bias)
// while the kernel before is still running; only what that kernel wrote (x, the residual) is
// read after pdl_wait. One block per SM (gate/up: two) leaves room for the next kernel.
// Measured on an H200 (bench_ops, docs/results/2026-12-02-h200-decode-stream): cp.async from
// all warps instead of TMA was no faster; a grid-stride order of groups was slower; more slots
// did not help, larger items did. The LM head's size goes to cuBLAS (kGemvMaxBytes), which
// streams it at ~93% of HBM where this kernel reaches ~66%.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda_ops.hpp"
#include "decode_stream.cuh"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

// The gate/up kernel (the largest of a layer, 5 items per block at 0.5b) runs two blocks per
// SM: twice the consumer warps on its items. H200, bench_decode 0.5b batch 1: 0.70 -> 0.68 ms
// per token, though the down_proj kernel after it can no longer start beside it. The others
// stay at one (two made q_proj, qkv and down_proj slower: 2.0 -> 2.5, 2.8 -> 4.5, 4.5 -> 5.1 us).
constexpr int kGateUpBlocksPerSm = 2;

// One op per kernel: the producer streams the block's items while the consumers load step
// metadata (Policy::prologue), wait for the kernel before (pdl_wait), read what it wrote
// (Policy::after_wait: the residual), stage x and work the items. The producer holds copies back
// until x is staged (kItemsBeforeStaging in decode_stream.cuh).
template <int M, class Policy>
__device__ __forceinline__ void stream_units(const Policy& pol, const Plan& pl, int n, int k,
                                             const bf16* x, int64_t ldx, const bf16* norm_w,
                                             float eps) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots], empty[kMaxSlots];
  __shared__ volatile int staged[2];  // [0]: x staged, [1]: past pdl_wait
  bf16* xs = reinterpret_cast<bf16*>(smem);
  bf16* nws = reinterpret_cast<bf16*>(smem + pl.norm_off);
  float* scratch = reinterpret_cast<float*>(smem + pl.scratch_off);
  const BlockUnits bu = BlockUnits::of(pl.units, pl.per_item);
  const Ring ring{reinterpret_cast<bf16*>(smem + pl.ring_off), full, empty, pl.slots,
                  2 * pl.per_item * pl.seg_len};
  RingPos pos;

  if (threadIdx.x == 0) {
    ring.init_barriers();
    staged[0] = 0;
    staged[1] = 0;
  }
  __syncthreads();

  if (threadIdx.x / 32 == kConsumerWarps) {
    if (threadIdx.x % 32 == 0) produce_items(pol, pl, bu, k, ring, pos, staged);
    return;
  }
  pol.prologue(bu, n, scratch);
  if (norm_w) load_norm(nws, norm_w, k);
  pdl_wait();  // from here on: what the kernel before wrote
  if (threadIdx.x == 0) staged[1] = 1;
  pol.after_wait(bu, n, scratch);
  stage_tokens<M>(xs, nws, x, ldx, n, k, norm_w != nullptr, eps);
  if (threadIdx.x == 0) staged[0] = 1;
  consume_items<M>(pol, pl, bu, n, k, xs, ring, pos, scratch);
}

// At most 80 registers a thread: uncapped (__launch_bounds__(kThreads, 2)) the one-token qkv
// kernel took 85 and was given 88. Capped, a 0.5b decode step at batch 1 measured 0.643-0.650
// ms against 0.646-0.657 uncapped, six A/B pairs on two H200s, the capped faster in each (a
// small gain; qkv<8> spills 4 bytes, batch 8 unchanged at 1.32 ms). At 72 registers
// (__launch_bounds__(kThreads, 3)) it was 0.700.
constexpr int kStreamRegs = 80;

template <int M>
__global__ void __maxnreg__(kStreamRegs)
    gemv_kernel(GemvPolicy<M> pol, Plan pl, const bf16* __restrict__ x, int64_t ldx, int n, int k) {
  pdl_launch_dependents();
  stream_units<M>(pol, pl, n, k, x, ldx, nullptr, 0.f);
}

template <int M>
__global__ void __maxnreg__(kStreamRegs) qkv_kernel(QkvParams p, Plan pl, int n) {
  pdl_launch_dependents();
  stream_units<M>(QkvPolicy<M>{p}, pl, n, p.d, p.x, p.d, p.norm_w, p.eps);
}

template <int M>
__global__ void __maxnreg__(kStreamRegs)
    gate_up_kernel(GateUpPolicy<M> pol, const bf16* __restrict__ x,
                   const bf16* __restrict__ norm_w, float eps, Plan pl, int n) {
  pdl_launch_dependents();
  stream_units<M>(pol, pl, n, pol.d, x, pol.d, norm_w, eps);
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
    const Plan pl = make_plan(inter, d, M, true, sms * kGateUpBlocksPerSm, 0, 0, blocks, smem);
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
