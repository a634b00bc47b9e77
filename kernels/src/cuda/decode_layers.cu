// Ops::decode_layers: every transformer layer of a decode step in one kernel. With a few tokens
// a step of ~5 kernels per layer spends most of its time at the kernel boundaries (the next
// kernel's wait for the previous one to drain, its launch, its first loads), not on bytes;
// here one persistent block per SM goes through the step's ops in order, and its producer
// thread streams the weights of every op of every layer back to back through one ring of
// shared-memory slots (decode_stream.cuh), whatever the consumers are waiting for.
//
// Per layer l the consumer warps of every block run
//   qkv       rmsnorm -> q|k|v -> bias -> rope -> q, K/V into the cache   (its units)
//   attention one (token, head, part of the context) task per block: partial softmax sums
//   o_proj    partial sums combined into the attention output; x += attn W_o^T   (its units)
//   gate_up   rmsnorm -> gate|up -> SwiGLU into h                         (its units)
//   down      x += h W_d^T                                                (its units)
// and between two ops waits until every block has finished the first (a counter per layer and
// op in global memory, released with a fence and an atomic add, acquired by one thread's spin).
// Every block is resident at once (one block per SM, grid = SMs), so the spin cannot wait for
// a block that never runs. The last block to finish zeroes the counters for the next launch.
// What another block wrote is read through L2 (load8_cg, __ldcg).
// Measured on an H200 (docs/results/2026-12-02-h200-decode-layers, and
// docs/results/2026-12-03-h200-batch1-primitives for today's figures): correct, but slower than
// the same ops as separate kernels (0.5b, 24 layers, 1 token: 669 vs 518 us); the five
// barriers per layer cost ~11 us of its ~28, and each exchange slows with the weight copies in
// flight on its SM. So the model uses it only when asked (SIESTA_DECODE_LAYERS=1);
// SIESTA_DECODE_LAYERS_TRACE=1 prints the breakdown.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "attention_parts.cuh"
#include "cuda_ops.hpp"
#include "decode_stream.cuh"
#include "pdl.cuh"

namespace siesta::kernels::cuda {
namespace {

constexpr int kMaxLayers = 96;  // LayerPtrs by value in the parameters: 112 bytes each
constexpr int kOpsPerLayer = 5;
constexpr int kSplits = Ops::kDecodeAttnSplits;
static_assert(kSplits <= kMaxParts);
static_assert(kMaxLayers * kOpsPerLayer + 1 <= int(kStepSyncCounters));
static_assert(Ops::kDecodeStepMaxTokens == kMaxTokens);

struct LayerPtrs {
  const bf16 *in_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *post_norm, *wg, *wu, *wd;
  bf16 *k_cache, *v_cache;
};

struct StepParams {
  bf16* x;        // [n, d] residual
  bf16* q;        // [n, n_heads * head_dim]
  bf16* h;        // [n, inter]
  float* part;    // [n, n_heads, splits, head_dim + 4]: max, sum, -, -, then head_dim sums
  unsigned* sync; // [n_layers * 5 + 1]
  const float* cos_sin;
  const int32_t *positions, *slot_mapping, *q_start, *context_len, *block_table;
  int max_blocks_per_seq, block_size, num_seqs;
  int d, inter, n_heads, n_kv_heads, head_dim, splits, n_layers;
  float eps, scale;
  Plan qkv, o, gate_up, down;  // how each op's units split (the ring fields are unused)
  int nws_off, ring_off, scratch_off, ring_slots;  // dynamic shared memory: xs at 0
  unsigned long long* trace;  // SIESTA_DECODE_LAYERS_TRACE: phase timestamps, else null
  LayerPtrs layer[kMaxLayers];
};

// The trace (a diagnostic): per block, [0] when the consumers passed pdl_wait, then per layer
// kTraceConsumer consumer timestamps (after each wait, staging and item loop), then per layer
// kTraceProducer producer timestamps (each op's copies issued); %globaltimer, ns.
constexpr int kTraceEvents = 14, kTraceConsumer = kTraceEvents + 4, kTraceProducer = 4;
__host__ __device__ inline int trace_stride(int n_layers) {
  return 1 + n_layers * (kTraceConsumer + kTraceProducer);
}
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void trace_mark(const StepParams& p, int at) {
  if (p.trace) p.trace[size_t(blockIdx.x) * trace_stride(p.n_layers) + at] = global_ns();
}
// Consumer event i of layer l (thread 0 marks it).
#define TRACE(i) \
  if (threadIdx.x == 0) trace_mark(p, 1 + l * kTraceConsumer + (i))

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// The consumers of this block, once every block has counted itself on c.
__device__ __forceinline__ void wait_all(const unsigned* c) {
  if (threadIdx.x == 0)
    while (ld_acquire(c) < gridDim.x) {
    }
  consumers_sync();
}

// This block's consumers are done with their part of an op (cooperative groups' grid sync
// does the same: barrier, then one thread's fence and atomic).
__device__ __forceinline__ void signal_done(unsigned* c) {
  consumers_sync();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(c, 1u);
  }
}

// xs[t, :] = the attention output of token t (bf16, heads side by side): each head's parts
// combined as paged_attention would have normalised them; zeros for n <= t < M.
template <int M>
__device__ void stage_attention(bf16* xs, const StepParams& p, int n) {
  const int hd = p.head_dim, H = p.n_heads, cph = hd / 8;
  for (int idx = threadIdx.x; idx < M * H * cph; idx += kConsumers) {
    const int t = idx / (H * cph), h = idx / cph % H, c = idx % cph;
    const Bf16x8 v = t < n ? combine_parts(p.part + int64_t(t * H + h) * p.splits * (hd + 4),
                                           p.splits, hd, c)
                           : Bf16x8{};
    store8(xs + int64_t(t) * H * hd + h * hd + c * 8, v);
  }
  consumers_sync();
}

template <int M>
__device__ __forceinline__ QkvPolicy<M> qkv_policy(const StepParams& p, const LayerPtrs& L) {
  return QkvPolicy<M>{QkvParams{p.q, p.x, L.in_norm, p.eps, p.d, L.wq, L.wk, L.wv, L.bq, L.bk,
                                L.bv, p.cos_sin, p.positions, p.slot_mapping, L.k_cache, L.v_cache,
                                p.n_heads, p.n_kv_heads, p.head_dim}};
}

// The weight ops of layer L, the same for the producer (rows) and the consumers (the rest).
template <int M>
__device__ __forceinline__ GemvPolicy<M> o_policy(const StepParams& p, const LayerPtrs& L) {
  return GemvPolicy<M>{p.x, p.d, L.wo, p.n_heads * p.head_dim, p.d, true};
}
template <int M>
__device__ __forceinline__ GateUpPolicy<M> gate_up_policy(const StepParams& p, const LayerPtrs& L) {
  return GateUpPolicy<M>{p.h, L.wg, L.wu, p.d, p.inter};
}
template <int M>
__device__ __forceinline__ GemvPolicy<M> down_policy(const StepParams& p, const LayerPtrs& L) {
  return GemvPolicy<M>{p.x, p.d, L.wd, p.inter, p.d, true};
}

template <int M, int TPK>
__global__ void __launch_bounds__(kThreads, 1)
    decode_layers_kernel(const __grid_constant__ StepParams p, int n) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots], empty[kMaxSlots];
  bf16* xs = reinterpret_cast<bf16*>(smem);
  bf16* nws = reinterpret_cast<bf16*>(smem + p.nws_off);
  float* scratch = reinterpret_cast<float*>(smem + p.scratch_off);
  const Ring ring{reinterpret_cast<bf16*>(smem + p.ring_off), full, empty, p.ring_slots,
                  int(kSlotBytes / 2)};
  RingPos pos;
  const int qd = p.n_heads * p.head_dim;
  const BlockUnits bq = BlockUnits::of(p.qkv.units, p.qkv.per_item);
  const BlockUnits bo = BlockUnits::of(p.o.units, p.o.per_item);
  const BlockUnits bg = BlockUnits::of(p.gate_up.units, p.gate_up.per_item);
  const BlockUnits bd = BlockUnits::of(p.down.units, p.down.per_item);

  if (threadIdx.x == 0) ring.init_barriers();
  __syncthreads();
  pdl_launch_dependents();

  if (threadIdx.x / 32 == kConsumerWarps) {  // the producer: weights only, never waits on data
    if (threadIdx.x % 32 != 0) return;
    // Weight op f = 4 l + {qkv, o, gate_up, down}: its items through the ring.
    const auto weights_op = [&](int f) {
      const LayerPtrs& L = p.layer[f / 4];
      switch (f % 4) {
        case 0:
          produce_items(qkv_policy<M>(p, L), p.qkv, bq, p.d, ring, pos);
          break;
        case 1:
          produce_items(o_policy<M>(p, L), p.o, bo, qd, ring, pos);
          break;
        case 2:
          produce_items(gate_up_policy<M>(p, L), p.gate_up, bg, p.d, ring, pos);
          break;
        default:
          produce_items(down_policy<M>(p, L), p.down, bd, p.inter, ring, pos);
      }
    };
    const int ops = 4 * p.n_layers;
    for (int f = 0; f < ops; ++f) {
      weights_op(f);
      trace_mark(p, 1 + p.n_layers * kTraceConsumer + (f / 4) * kTraceProducer + f % 4);
    }
    return;
  }

  // Op i = 5 l + {qkv, attention, o, gate_up, down} is done when every block has said so.
  const auto signal = [&](int i) { signal_done(p.sync + i); };
  const auto wait = [&](int i) { wait_all(p.sync + i); };

  pdl_wait();  // x: the embedding kernel's output
  if (threadIdx.x == 0) trace_mark(p, 0);
  const int tasks = n * p.n_heads * p.splits;
  unsigned long long waited[4];
  for (int l = 0; l < p.n_layers; ++l) {
    waited[0] = waited[1] = waited[2] = waited[3] = 0;
    const LayerPtrs& L = p.layer[l];
    const int c = l * kOpsPerLayer;
    {
      const QkvPolicy<M> pol = qkv_policy<M>(p, L);
      pol.prologue(bq, n, scratch);
      load_norm(nws, L.in_norm, p.d);
      if (l > 0) wait(c - 1);  // the layer before's down_proj, into x
      TRACE(0);
      stage_tokens<M>(xs, nws, p.x, p.d, n, p.d, true, p.eps);
      TRACE(1);
      consume_items<M>(pol, p.qkv, bq, n, p.d, xs, ring, pos, scratch,
                       p.trace ? &waited[0] : nullptr);
      TRACE(2);
      signal(c + 0);
    }
    const PartsArgs pa{p.q, L.k_cache, L.v_cache, p.part, p.q_start, p.context_len,
                       p.block_table, p.max_blocks_per_seq, p.block_size, p.num_seqs,
                       p.n_heads, p.n_kv_heads, p.splits, p.scale};
    wait(c + 0);  // q and this step's K/V rows of every head
    TRACE(3);
    for (int task = blockIdx.x; task < tasks; task += gridDim.x)
      attend_part<TPK, kConsumers, false>(pa, task, [] {});
    TRACE(4);
    signal(c + 1);
    {
      const GemvPolicy<M> pol = o_policy<M>(p, L);
      wait(c + 1);
      TRACE(5);
      pol.after_wait(bo, n, scratch);
      stage_attention<M>(xs, p, n);
      TRACE(6);
      consume_items<M>(pol, p.o, bo, n, qd, xs, ring, pos, scratch,
                       p.trace ? &waited[1] : nullptr);
      TRACE(7);
      signal(c + 2);
    }
    {
      const GateUpPolicy<M> pol = gate_up_policy<M>(p, L);
      load_norm(nws, L.post_norm, p.d);
      wait(c + 2);
      TRACE(8);
      stage_tokens<M>(xs, nws, p.x, p.d, n, p.d, true, p.eps);
      TRACE(9);
      consume_items<M>(pol, p.gate_up, bg, n, p.d, xs, ring, pos, scratch,
                       p.trace ? &waited[2] : nullptr);
      TRACE(10);
      signal(c + 3);
    }
    {
      const GemvPolicy<M> pol = down_policy<M>(p, L);
      wait(c + 3);
      TRACE(11);
      pol.after_wait(bd, n, scratch);
      stage_tokens<M>(xs, nullptr, p.h, p.inter, n, p.inter, false, 0.f);
      TRACE(12);
      consume_items<M>(pol, p.down, bd, n, p.inter, xs, ring, pos, scratch,
                       p.trace ? &waited[3] : nullptr);
      TRACE(13);
      signal(c + 4);
    }
    if (p.trace && threadIdx.x == 0)  // durations, not timestamps
      for (int k = 0; k < 4; ++k)
        p.trace[size_t(blockIdx.x) * trace_stride(p.n_layers) + 1 + l * kTraceConsumer +
                kTraceEvents + k] = waited[k];
  }
  // Every block counts itself out; the last one has seen every other block past its last
  // wait, so it may zero the counters for the next launch.
  if (threadIdx.x == 0) {
    unsigned* out = p.sync + p.n_layers * kOpsPerLayer;
    __threadfence();
    if (atomicAdd(out, 1u) == gridDim.x - 1) {
      for (int i = 0; i <= p.n_layers * kOpsPerLayer; ++i) p.sync[i] = 0;
      __threadfence();
    }
  }
}

// The trace's device buffer, grown on demand (diagnostics only; never freed before exit).
struct DevTrace {
  unsigned long long* ptr = nullptr;
  size_t elems = 0;
  unsigned long long* reserve(size_t n, cudaStream_t st) {
    if (n > elems) {
      if (ptr) SIESTA_CUDA_CHECK(cudaFree(ptr));
      SIESTA_CUDA_CHECK(cudaMalloc(&ptr, n * 8));
      elems = n;
    }
    SIESTA_CUDA_CHECK(cudaMemsetAsync(ptr, 0, n * 8, st));
    return ptr;
  }
};

template <int M, int TPK>
void launch_layers(const StepParams& p, int n, unsigned grid, size_t smem, cudaStream_t st) {
  auto kernel = decode_layers_kernel<M, TPK>;
  allow_smem(kernel, smem);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute attr[2];
  int count = 0;
  if (pdl_enabled()) {
    attr[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  // Cooperative: the driver promises every block resident at once, even beside other work on
  // the GPU (another stream's kernels), which the blocks' waits on each other rely on.
  attr[count].id = cudaLaunchAttributeCooperative;
  attr[count++].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = unsigned(count);
  SIESTA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p, n));
}

template <int M>
void launch_for_head(const StepParams& p, int n, unsigned grid, size_t smem, cudaStream_t st) {
  if (p.head_dim == 64) launch_layers<M, 8>(p, n, grid, smem, st);
  else launch_layers<M, 16>(p, n, grid, smem, st);
}

// Static shared memory of the largest instantiation (barriers, reduction and attention arrays).
size_t static_smem_bytes() {
  static const size_t bytes = [] {
    cudaFuncAttributes a{};
    SIESTA_CUDA_CHECK(cudaFuncGetAttributes(&a, decode_layers_kernel<kMaxTokens, 16>));
    return a.sharedSizeBytes;
  }();
  return bytes;
}

const bf16* bf(const void* p) { return static_cast<const bf16*>(p); }

// SIESTA_DECODE_LAYERS_TRACE=1: every launch outside stream capture records the trace above,
// waits for the kernel and prints where a layer's time went (mean over blocks and the middle
// layers) to stderr. For finding the bottleneck on a GPU; it serialises the stream.
bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SIESTA_DECODE_LAYERS_TRACE");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void print_trace(const std::vector<unsigned long long>& t, int blocks, int L, int n) {
  const int st = trace_stride(L);
  const auto ev = [&](int b, int l, int i) {
    return i < kTraceEvents ? double(t[size_t(b) * st + 1 + size_t(l) * kTraceConsumer + i])
                              : double(t[size_t(b) * st + 1 + size_t(l + 1) * kTraceConsumer]);
  };
  const auto prod = [&](int b, int l, int j) {
    const size_t at = size_t(b) * st + 1 + size_t(L) * kTraceConsumer + size_t(l) * kTraceProducer;
    return double(t[at + j]);
  };
  static const char* names[kTraceEvents] = {
      "qkv: stage x (norm)", "qkv: items", "barrier after qkv", "attention tasks",
      "barrier after attention", "o_proj: residual + combine", "o_proj: items",
      "barrier after o_proj", "gate_up: stage x (norm)", "gate_up: items",
      "barrier after gate_up", "down: residual + stage h", "down: items",
      "barrier after down"};
  if (L < 4) return;
  std::fprintf(stderr, "decode_layers trace: %d tokens, %d blocks, %d layers; us per layer, "
               "mean over blocks and layers 1..%d (mean of the per-layer max over blocks)\n",
               n, blocks, L, L - 2);
  double layer_sum = 0;
  for (int i = 0; i < kTraceEvents; ++i) {
    double sum = 0, max_sum = 0;
    for (int l = 1; l + 1 < L; ++l) {
      double mx = 0;
      for (int b = 0; b < blocks; ++b) {
        const double d = ev(b, l, i + 1) - ev(b, l, i);
        sum += d;
        mx = std::max(mx, d);
      }
      max_sum += mx;
    }
    const double mean = sum / (double(blocks) * (L - 2)) / 1e3;
    layer_sum += mean;
    std::fprintf(stderr, "  %-28s %7.2f  (%7.2f)\n", names[i], mean, max_sum / (L - 2) / 1e3);
  }
  static const char* ops[4] = {"qkv", "o_proj", "gate_up", "down"};
  std::fprintf(stderr, "  of the items, waiting for their bytes (thread 0):");
  for (int k = 0; k < 4; ++k) {
    double sum = 0;
    for (int l = 1; l + 1 < L; ++l)
      for (int b = 0; b < blocks; ++b)
        sum += double(t[size_t(b) * st + 1 + size_t(l) * kTraceConsumer + kTraceEvents + k]);
    std::fprintf(stderr, " %s %.2f", ops[k], sum / (double(blocks) * (L - 2)) / 1e3);
  }
  std::fprintf(stderr, "\n");
  double lead_q = 0, lead_d = 0;
  for (int l = 1; l + 1 < L; ++l)
    for (int b = 0; b < blocks; ++b)
      lead_q += prod(b, l, 0) - ev(b, l, 0), lead_d += prod(b, l, 3) - ev(b, l, 0);
  const double norm = double(blocks) * (L - 2) * 1e3;
  double first = 1e300, last = 0;
  for (int b = 0; b < blocks; ++b) {
    first = std::min(first, double(t[size_t(b) * st]));
    last = std::max(last, ev(b, L - 1, kTraceEvents - 1));
  }
  std::fprintf(stderr, "  layer                        %7.2f\n  producer done issuing the "
               "layer's qkv / down copies, vs the consumers starting its qkv: %+.2f / %+.2f us\n"
               "  whole kernel after pdl_wait: %.1f us\n",
               layer_sum, lead_q / norm, lead_d / norm, (last - first) / 1e3);
}

}  // namespace

bool CudaOps::decode_layers(const DecodeStep& st, const PagedBatch& b, const AttnShape& s) {
  const int n = b.num_tokens;
  const int64_t qd = int64_t(s.n_heads) * s.head_dim;
  if (!hopper_ || n < 1 || n > kMaxTokens || st.n_layers < 1 ||
      st.n_layers > kMaxLayers || (s.head_dim != 64 && s.head_dim != 128) || s.n_kv_heads <= 0 ||
      s.n_heads % s.n_kv_heads != 0 || st.d <= 0 || st.d % 8 != 0 || st.inter <= 0 ||
      st.inter % 8 != 0 || st.inter >= (int64_t(1) << 30) || qd >= (int64_t(1) << 30) ||
      !st.layers || !st.caches || st.caches[0].block_size <= 0)
    return false;
  const auto aligned = [](const void* p) { return p && aligned16(p); };
  if (!aligned(st.x) || !aligned(st.q) || !aligned(st.h) || !aligned(st.partials)) return false;
  for (int l = 0; l < st.n_layers; ++l) {
    const DecodeLayerWeights& w = st.layers[l];
    const PagedKv& c = st.caches[l];
    if (!aligned(w.qkv.q) || !aligned(w.qkv.k) || !aligned(w.qkv.v) || !aligned(w.input_norm) ||
        !aligned(w.o) || !aligned(w.post_norm) || !aligned(w.gate) || !aligned(w.up) ||
        !aligned(w.down) || !aligned(c.k) || !aligned(c.v) ||
        c.block_size != st.caches[0].block_size)
      return false;
  }
  const int M = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8;
  const unsigned grid = unsigned(std::max(1, sm_count_));

  // Shared memory: staged tokens (the widest of d, q and inter), the norm weight, the finish
  // scratch of the widest op, then as many 32 KiB ring slots as fit.
  StepParams p{};
  unsigned blocks;
  size_t unused;
  const int64_t d = st.d, inter = st.inter;
  p.qkv = make_plan((s.n_heads + 2 * s.n_kv_heads) * (s.head_dim / 2), d, M, true, int(grid), 0,
                    0, blocks, unused);
  p.o = make_plan((d + 1) / 2, qd, M, false, int(grid), 0, 0, blocks, unused);
  p.gate_up = make_plan(inter, d, M, true, int(grid), 0, 0, blocks, unused);
  p.down = make_plan((d + 1) / 2, inter, M, false, int(grid), 0, 0, blocks, unused);
  for (const Plan* pl : {&p.qkv, &p.o, &p.gate_up, &p.down})  // an item must fit its slot
    if (size_t(4) * pl->per_item * pl->seg_len > kSlotBytes) return false;
  const auto per_block = [&](const Plan& pl) { return size_t((pl.units + grid - 1) / grid); };
  const size_t scratch =
      std::max({size_t(2 * M + M * s.head_dim) * 4 + 8 * per_block(p.qkv),
                size_t(8 * M) * per_block(p.o), size_t(8 * M) * per_block(p.down)});
  size_t off = align16(size_t(M) * size_t(std::max({d, qd, inter})) * 2);
  p.nws_off = int(off);
  off += align16(size_t(d) * 2);
  p.scratch_off = int(off);
  off += align16(scratch);
  off = (off + 127) / 128 * 128;
  p.ring_off = int(off);
  const size_t limit = max_smem_optin_ > static_smem_bytes() ? max_smem_optin_ - static_smem_bytes()
                                                              : 0;
  if (off + 2 * kSlotBytes > limit) return false;  // a double-buffered ring at least
  p.ring_slots = int(std::min<size_t>(kMaxSlots, (limit - off) / kSlotBytes));
  const size_t smem = off + size_t(p.ring_slots) * kSlotBytes;

  activate();
  p.x = static_cast<bf16*>(st.x);
  p.q = static_cast<bf16*>(st.q);
  p.h = static_cast<bf16*>(st.h);
  p.part = static_cast<float*>(st.partials);
  p.sync = step_sync_;
  p.cos_sin = st.cos_sin_f32;
  p.positions = b.positions;
  p.slot_mapping = b.slot_mapping;
  p.q_start = b.q_start;
  p.context_len = b.context_len;
  p.block_table = b.block_table;
  p.max_blocks_per_seq = b.max_blocks_per_seq;
  p.block_size = st.caches[0].block_size;
  p.num_seqs = b.num_seqs;
  p.d = int(d);
  p.inter = int(inter);
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  p.splits = std::clamp(int(grid) / (n * s.n_heads), 1, kSplits);
  p.n_layers = st.n_layers;
  p.eps = st.eps;
  p.scale = s.scale;
  for (int l = 0; l < st.n_layers; ++l) {
    const DecodeLayerWeights& w = st.layers[l];
    p.layer[l] = LayerPtrs{bf(w.input_norm), bf(w.qkv.q), bf(w.qkv.k), bf(w.qkv.v),
                           bf(w.qkv.q_bias), bf(w.qkv.k_bias), bf(w.qkv.v_bias), bf(w.o),
                           bf(w.post_norm), bf(w.gate), bf(w.up), bf(w.down),
                           static_cast<bf16*>(st.caches[l].k), static_cast<bf16*>(st.caches[l].v)};
  }
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  SIESTA_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
  const bool trace = trace_enabled() && capture == cudaStreamCaptureStatusNone;
  static DevTrace trace_buf;
  if (trace) p.trace = trace_buf.reserve(size_t(grid) * trace_stride(st.n_layers), stream_);
  switch (M) {
    case 1: launch_for_head<1>(p, n, grid, smem, stream_); break;
    case 2: launch_for_head<2>(p, n, grid, smem, stream_); break;
    case 4: launch_for_head<4>(p, n, grid, smem, stream_); break;
    default: launch_for_head<8>(p, n, grid, smem, stream_); break;
  }
  if (trace) {
    std::vector<unsigned long long> h(size_t(grid) * trace_stride(st.n_layers));
    SIESTA_CUDA_CHECK(cudaMemcpyAsync(h.data(), p.trace, h.size() * 8, cudaMemcpyDeviceToHost,
                                      stream_));
    SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    print_trace(h, int(grid), st.n_layers, n);
  }
  return true;
}

}  // namespace siesta::kernels::cuda
