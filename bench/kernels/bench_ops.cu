// Memory-bound ops of the CUDA op table at 0.5b training / decode sizes, in GB/s of the fewest
// bytes each op must move (every input read once, every output written once), against the
// device-to-device copy bandwidth (bytes read + written) measured in the same run.
// Check: outputs poisoned (NaN) before the first call are all finite after it.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_bench.cuh"
#include "siesta/kernels/device.hpp"
#include "siesta/kernels/ops.hpp"

using namespace siesta;
using namespace siesta::bench;
using namespace siesta::bench::gpu;

namespace {

// The floor of a chain of dependent kernels in a CUDA graph: each waits for the one before
// (griddepcontrol.wait, a no-op without PDL) and writes one word.
__global__ void chain_kernel(int* p) {
  asm volatile("griddepcontrol.launch_dependents;" :::);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (threadIdx.x == 0) p[blockIdx.x] += 1;
}

// The same, reading `per_block` 16-byte words of weights per block before or after the wait:
// whether weight loads issued before griddepcontrol.wait overlap the kernel before.
template <bool kBefore>
__global__ void chain_load_kernel(int* p, const uint4* __restrict__ w, int per_block) {
  asm volatile("griddepcontrol.launch_dependents;" :::);
  uint32_t bits = 0;
  auto load = [&] {
    for (int i = threadIdx.x; i < per_block; i += blockDim.x) {
      const uint4 v = w[int64_t(blockIdx.x) * per_block + i];
      bits ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (bits == 0x7fc00001u) p[1023] = int(bits);  // consumes the loads here
  };
  if (kBefore) load();
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (!kBefore) load();
  if (threadIdx.x == 0) p[blockIdx.x] += 1;
}

// chain_load_kernel<true> plus what a decode GEMV does after the wait: stage 896 bf16 of x
// in shared memory, synchronise the block.
__global__ void chain_load_stage_kernel(int* p, const uint4* __restrict__ w, int per_block,
                                        const uint4* __restrict__ x) {
  __shared__ uint4 xs[112];
  asm volatile("griddepcontrol.launch_dependents;" :::);
  uint32_t bits = 0;
  for (int i = threadIdx.x; i < per_block; i += blockDim.x) {
    const uint4 v = w[int64_t(blockIdx.x) * per_block + i];
    bits ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (bits == 0x7fc00001u) p[1023] = int(bits);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (threadIdx.x < 112) xs[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  if (threadIdx.x == 0) p[blockIdx.x] += int(xs[blockIdx.x % 112].x & 1u);
}

// Launches kernel on 256-thread blocks, as a programmatic dependent of the kernel before when
// pdl is set.
template <class... KernelArgs, class... Args>
void launch_dependent(void (*kernel)(KernelArgs...), int blocks, bool pdl, cudaStream_t st,
                      Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(blocks));
  cfg.blockDim = dim3(256);
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  SIESTA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

// Copies of one weight buffer, 256 MiB or more together (at most 512), handed out in turn: a
// row that cycles through them reads its weights from HBM, as a decode step reads each layer's
// weights once, rather than from L2. l2_resident keeps a single copy instead.
class WeightReplicas {
 public:
  WeightReplicas(size_t bytes, uint64_t seed, bool l2_resident = false)
      : bytes_(bytes),
        count_(l2_resident ? 1
                           : std::clamp<int64_t>(int64_t(std::ceil(268435456.0 / double(bytes))),
                                                 1, 512)),
        buf_(size_t(count_) * bytes) {
    fill_bf16(buf_.as(), size_t(count_) * bytes / 2, seed, -0.05f, 0.05f);
  }
  const char* next() { return buf_.as<char>() + size_t(next_++ % count_) * bytes_; }

 private:
  size_t bytes_;
  int64_t count_, next_ = 0;
  Buffer buf_;
};

struct Runner {
  kernels::Ops& ops;
  const Options& o;
  Table& table;
  double limit_gbps;
  std::string only;  // --only: run just the rows whose "op size" contains this
  bool selected(const std::string& op, const std::string& size) const {
    return only.empty() || (op + " " + size).find(only) != std::string::npos;
  }
  // Times fn, whose minimal traffic is `bytes`; poisons `out` first (unless fn accumulates
  // into it) and checks that it is finite after one call.
  // in_graph: time kGraphCalls calls captured into one CUDA graph, as a decode step replays
  // them (no host launch cost between kernels; PDL overlap kept).
  void row(const std::string& op, const std::string& size, double bytes, void* out,
           size_t out_elems, bool out_bf16, const std::function<void()>& fn,
           bool accumulates = false, bool in_graph = false) {
    if (!selected(op, size)) return;
    if (!accumulates) poison(out, out_elems * (out_bf16 ? 2 : 4));
    SIESTA_CUDA_CHECK(cudaDeviceSynchronize());
    fn();
    ops.synchronize();
    const std::string check = finite_check(out, out_elems, out_bf16);
    // ~2 ms a sample at the limit; ops far below it (latency-bound) are capped in calls.
    const int iters = std::clamp(int(2e-3 / (bytes / (limit_gbps * 1e9))), 1, 4096);
    double ms = 0;
    if (in_graph) {
      constexpr int kGraphCalls = 256;
      auto st = static_cast<cudaStream_t>(ops.native_stream());
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      SIESTA_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
      for (int i = 0; i < kGraphCalls; ++i) fn();
      SIESTA_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
      SIESTA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      ms = time_ms(o, std::max(1, iters / kGraphCalls),
                   [&] { SIESTA_CUDA_CHECK(cudaGraphLaunch(exec, st)); },
                   [&] { ops.synchronize(); }) /
           kGraphCalls;
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    } else {
      ms = time_ms(o, iters, fn, [&] { ops.synchronize(); });
    }
    table.row({{"op", op}, {"size", size}, {"bytes", fmt_bytes(bytes)}, {"time_us", ms * 1e3}},
              bytes / (ms * 1e-3) / 1e9, limit_gbps, "GB/s", check);
  }
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv, "bench_ops",
                            "GB/s of rmsnorm, swiglu, token_logprobs, paged decode attention and "
                            "the decode GEMVs vs the device copy bandwidth; --only TEXT runs the "
                            "rows whose 'op size' contains TEXT (for ncu, scripts/ncu-ops.sh)");
  std::string only;
  for (size_t i = 0; i < o.rest.size(); ++i) {
    if (o.rest[i] == "--only" && i + 1 < o.rest.size()) {
      only = o.rest[++i];
    } else {
      std::cerr << "bench_ops: unknown argument '" << o.rest[i]
                << "' (allowed: --only TEXT, plus --warmup --repeats --quick --jsonl)\n";
      return 2;
    }
  }
  if (!kernels::cuda_available()) {
    std::cout << "bench_ops: no CUDA GPU (" << kernels::cuda_status().error << "); skipped\n";
    return 0;
  }
  try {
    auto ops = kernels::make_cuda_ops(0);
    cudaStream_t st;
    SIESTA_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const double copy_gbps =
        copy_bandwidth_gbps(st, o, o.quick ? (size_t(256) << 20) : (size_t(2) << 30));
    Table table("bench_ops", o);
    Runner run{*ops, o, table, copy_gbps, only};

    const int64_t T = o.quick ? 1024 : 8 * 1024, d = 896, inter = 4864, vocab = 151936;
    uint64_t seed = 100;
    {  // RMSNorm over the residual stream
      Buffer x(T * d * 2), w(d * 2), out(T * d * 2), rstd(T * 4), dx(T * d * 2), dw(d * 4);
      fill_bf16(x.as(), T * d, ++seed, -2.f, 2.f);
      fill_bf16(w.as(), d, ++seed, 0.5f, 1.5f);
      const double fwd = 2.0 * T * d * 2 + d * 2 + T * 4;
      run.row("rmsnorm_forward", std::to_string(T) + "x" + std::to_string(d), fwd, out.as(), T * d,
              true, [&] { ops->rmsnorm_forward(out.as(), rstd.as<float>(), x.as(), w.as(), T, d, 1e-6f); });
      fill_bf16(dx.as(), T * d, ++seed);
      fill_f32(dw.as<float>(), d, ++seed);
      // dout, x, dx read; dx written (accumulate); w, rstd read.
      const double bwd = 4.0 * T * d * 2 + d * 2 + T * 4;
      Buffer dout(T * d * 2);
      fill_bf16(dout.as(), T * d, ++seed);
      run.row(
          "rmsnorm_backward", std::to_string(T) + "x" + std::to_string(d), bwd, dx.as(), T * d,
          true,
          [&] {
            ops->rmsnorm_backward(dx.as(), dw.as<float>(), dout.as(), x.as(), w.as(),
                                  rstd.as<float>(), T, d);
          },
          /*accumulates=*/true);
    }
    {  // SwiGLU over the MLP's intermediate activations
      const size_t n = size_t(T) * inter;
      Buffer g(n * 2), u(n * 2), h(n * 2), dh(n * 2), dg(n * 2), du(n * 2);
      fill_bf16(g.as(), n, ++seed, -4.f, 4.f);
      fill_bf16(u.as(), n, ++seed);
      fill_bf16(dh.as(), n, ++seed);
      const std::string size = std::to_string(T) + "x" + std::to_string(inter);
      run.row("swiglu_forward", size, 3.0 * n * 2, h.as(), n, true,
              [&] { ops->swiglu_forward(h.as(), g.as(), u.as(), int64_t(n)); });
      run.row("swiglu_backward", size, 5.0 * n * 2, dg.as(), n, true,
              [&] { ops->swiglu_backward(dg.as(), du.as(), dh.as(), g.as(), u.as(), int64_t(n)); });
    }
    {  // Log-probs of chosen tokens over the LM head's logits
      const int64_t n = o.quick ? 256 : 2048;
      Buffer logits(size_t(n) * vocab * 2), tg(n * 4), lp(n * 4), ent(n * 4), dlp(n * 4),
          dl(size_t(n) * vocab * 2);
      fill_bf16(logits.as(), size_t(n) * vocab, ++seed, -8.f, 8.f);
      fill_i32(tg.as<int32_t>(), size_t(n), ++seed, int32_t(vocab));
      fill_f32(dlp.as<float>(), size_t(n), ++seed);
      const std::string size = std::to_string(n) + "x" + std::to_string(vocab);
      const double row_bytes = double(n) * vocab * 2;
      run.row("token_logprobs+entropy", size, row_bytes, lp.as(), n, false, [&] {
        ops->token_logprobs(lp.as<float>(), ent.as<float>(), logits.as(), tg.as<int32_t>(), n,
                            vocab);
      });
      // Minimal traffic: read logits once, write dlogits once (the kernel reads twice).
      run.row("token_logprobs_backward", size, 2 * row_bytes, dl.as(), size_t(n) * vocab, true, [&] {
        ops->token_logprobs_backward(dl.as(), logits.as(), tg.as<int32_t>(), dlp.as<float>(), n,
                                     vocab);
      });
    }
    // Paged decode attention, 0.5b heads (14 query, 2 KV, head_dim 64), block size 16.
    struct Decode { int batch, ctx; };
    for (Decode dc : {Decode{1, 256}, Decode{1, 1024}, Decode{64, 256}, Decode{64, 1024},
                      Decode{8, 8192}}) {
      const int H = 14, Hk = 2, hd = 64, bs = 16;
      const int blocks_per_seq = (dc.ctx + bs - 1) / bs, num_blocks = dc.batch * blocks_per_seq;
      const size_t kv_elems = size_t(num_blocks) * bs * Hk * hd;
      Buffer kc(kv_elems * 2), vc(kv_elems * 2), q(size_t(dc.batch) * H * hd * 2),
          out(size_t(dc.batch) * H * hd * 2);
      fill_bf16(kc.as(), kv_elems, ++seed);
      fill_bf16(vc.as(), kv_elems, ++seed);
      fill_bf16(q.as(), size_t(dc.batch) * H * hd, ++seed);
      std::vector<int32_t> table_h(static_cast<size_t>(num_blocks)), qs(size_t(dc.batch) + 1),
          ctx(size_t(dc.batch), dc.ctx), pos(size_t(dc.batch), dc.ctx - 1);
      std::iota(table_h.begin(), table_h.end(), 0);
      std::shuffle(table_h.begin(), table_h.end(), std::mt19937(5));  // scattered blocks
      std::iota(qs.begin(), qs.end(), 0);
      Buffer table_d(table_h.size() * 4), qs_d(qs.size() * 4), ctx_d(ctx.size() * 4),
          pos_d(pos.size() * 4);
      ops->copy_to_device(table_d.as(), table_h.data(), table_h.size() * 4);
      ops->copy_to_device(qs_d.as(), qs.data(), qs.size() * 4);
      ops->copy_to_device(ctx_d.as(), ctx.data(), ctx.size() * 4);
      ops->copy_to_device(pos_d.as(), pos.data(), pos.size() * 4);
      kernels::PagedBatch b;
      b.num_seqs = dc.batch;
      b.num_tokens = dc.batch;
      b.q_start = qs_d.as<int32_t>();
      b.context_len = ctx_d.as<int32_t>();
      b.block_table = table_d.as<int32_t>();
      b.max_blocks_per_seq = blocks_per_seq;
      b.positions = pos_d.as<int32_t>();
      b.max_q_len = 1;
      b.max_context_len = dc.ctx;
      const kernels::AttnShape s{H, Hk, hd, 0.125f};
      const kernels::PagedKv cache{kc.as(), vc.as(), num_blocks, bs};
      const double bytes = 2.0 * dc.batch * dc.ctx * Hk * hd * 2 + 2.0 * dc.batch * H * hd * 2;
      run.row("paged_attention decode",
              "batch " + std::to_string(dc.batch) + " ctx " + std::to_string(dc.ctx), bytes,
              out.as(), size_t(dc.batch) * H * hd, true,
              [&] { ops->paged_attention(out.as(), q.as(), cache, b, s); }, false, true);
    }
    // Decode-step kernels at 0.5b shapes (d 896, inter 4864, 14/2 heads of 64, vocab 151936),
    // weights cycling through WeightReplicas.
    for (int m : {1, 8}) {
      const std::string tok = " m" + std::to_string(m);
      Buffer x(size_t(m) * inter * 2), y(size_t(m) * vocab * 2);
      fill_bf16(x.as(), size_t(m) * inter, ++seed);
      struct Lin { const char* name; int64_t out, in; float beta; bool l2 = false; };
      for (Lin l : {Lin{"q_proj", d, d, 0.f}, Lin{"q_proj (weights in L2)", d, d, 0.f, true},
                    Lin{"down_proj+residual", d, inter, 1.f},
                    Lin{"down_proj+residual (weights in L2)", d, inter, 1.f, true},
                    Lin{"lm_head", vocab, d, 0.f}}) {
        const double wbytes = double(l.out) * l.in * 2;
        WeightReplicas w(size_t(wbytes), ++seed, l.l2);
        if (l.beta != 0.f) fill_bf16(y.as(), size_t(m) * l.out, ++seed);
        const double bytes = wbytes + double(m) * (l.in + l.out * (1 + l.beta)) * 2;
        run.row(std::string("decode gemv ") + l.name + tok,
                std::to_string(l.out) + "x" + std::to_string(l.in), bytes, y.as(),
                size_t(m) * l.out, true,
                [&] {
                  kernels::GemmArgs g;
                  g.trans_b = true;
                  g.m = m, g.n = l.out, g.k = l.in;
                  g.a = x.as(), g.lda = l.in;
                  g.b = w.next(), g.ldb = l.in;
                  g.beta = l.beta;
                  g.c = y.as(), g.ldc = l.out;
                  g.c_dtype = DType::BF16;
                  ops->gemm(g);
                },
                /*accumulates=*/l.beta != 0.f, /*in_graph=*/true);
      }
      for (bool l2 : {false, true}) {  // rmsnorm -> gate|up -> SwiGLU
        const double wbytes = 2.0 * inter * d * 2;
        WeightReplicas w(size_t(wbytes), ++seed, l2);
        Buffer nw(d * 2), h(size_t(m) * inter * 2);
        fill_bf16(nw.as(), d, ++seed, 0.5f, 1.5f);
        run.row(std::string("decode norm_gate_up") + (l2 ? " (weights in L2)" : "") + tok,
                "2x" + std::to_string(inter) + "x" + std::to_string(d),
                wbytes + double(m) * (d + inter) * 2, h.as(), size_t(m) * inter, true, [&] {
                  const char* base = w.next();
                  ops->norm_gate_up(h.as(), x.as(), nw.as(), 1e-6f, base,
                                    base + size_t(inter * d) * 2, m, d, inter);
                }, false, true);
      }
      {  // rmsnorm -> q|k|v + bias -> rope -> q out, K/V into the cache
        const int H = 14, Hk = 2, hd = 64, qd = H * hd, kvd = Hk * hd;
        const int64_t rows = qd + 2 * kvd;
        const double wbytes = double(rows) * d * 2;
        WeightReplicas w(size_t(wbytes), ++seed);
        Buffer bias(size_t(rows) * 2), nw(d * 2), q(size_t(m) * qd * 2),
            kc(size_t(64) * kvd * 2), vc(size_t(64) * kvd * 2), cs(size_t(4096) * hd * 4),
            pos(size_t(m) * 4), slots(size_t(m) * 4);
        fill_bf16(bias.as(), size_t(rows), ++seed);
        fill_bf16(nw.as(), d, ++seed, 0.5f, 1.5f);
        fill_f32(cs.as<float>(), size_t(4096) * hd, ++seed);
        fill_i32(pos.as<int32_t>(), size_t(m), ++seed, 4096);
        std::vector<int32_t> sl(static_cast<size_t>(m));
        std::iota(sl.begin(), sl.end(), 0);
        ops->copy_to_device(slots.as(), sl.data(), sl.size() * 4);
        kernels::PagedBatch b;
        b.num_seqs = m, b.num_tokens = m, b.max_q_len = 1;
        b.positions = pos.as<int32_t>();
        b.slot_mapping = slots.as<int32_t>();
        const kernels::PagedKv cache{kc.as(), vc.as(), 4, 16};
        const kernels::AttnShape s{H, Hk, hd, 0.125f};
        run.row("decode norm_qkv_rope_cache" + tok, std::to_string(rows) + "x" + std::to_string(d),
                wbytes + double(m) * (d + rows) * 2, q.as(), size_t(m) * qd, true, [&] {
                  const char* base = w.next();
                  const char* bb = bias.as<char>();
                  kernels::Ops::QkvWeights qkv{base, base + size_t(qd) * d * 2,
                                               base + size_t(qd + kvd) * d * 2, bb,
                                               bb + size_t(qd) * 2, bb + size_t(qd + kvd) * 2};
                  ops->norm_qkv_rope_cache(q.as(), x.as(), nw.as(), 1e-6f, d, qkv,
                                           cs.as<float>(), cache, b, s);
                }, false, true);
      }
      {  // A decode step's 24 layers at ctx 256: one Ops::decode_layers call, and the same
         // ops one by one (norm_qkv_rope_cache, paged_attention, gemm, norm_gate_up, gemm)
        const int L = 24, H = 14, Hk = 2, hd = 64, qd = H * hd, kvd = Hk * hd, ctx = 256, bs = 16;
        const int blocks_per_seq = ctx / bs, num_blocks = m * blocks_per_seq;
        const kernels::AttnShape s{H, Hk, hd, 0.125f};
        // Per layer, in elements: wq wk wv | bq bk bv | in_norm | wo | post_norm | wg wu | wd
        const size_t e_qkv = size_t(qd + 2 * kvd) * d, e_bias = size_t(qd + 2 * kvd);
        const size_t per_layer =
            e_qkv + e_bias + d + size_t(d) * qd + d + 2 * size_t(inter) * d + size_t(d) * inter;
        Buffer wbuf(per_layer * L * 2);
        fill_bf16(wbuf.as(), per_layer * L, ++seed, -0.03f, 0.03f);
        const size_t cache_elems = size_t(num_blocks) * bs * kvd;
        Buffer kv(cache_elems * 2 * 2 * L);
        fill_bf16(kv.as(), cache_elems * 2 * L, ++seed);
        std::vector<kernels::Ops::DecodeLayerWeights> lw(L);
        std::vector<kernels::PagedKv> caches(L);
        for (int l = 0; l < L; ++l) {
          const char* at = wbuf.as<char>() + size_t(l) * per_layer * 2;
          auto take = [&](size_t elems) {
            const char* p = at;
            at += elems * 2;
            return p;
          };
          auto& w = lw[size_t(l)];
          w.qkv.q = take(size_t(qd) * d), w.qkv.k = take(size_t(kvd) * d);
          w.qkv.v = take(size_t(kvd) * d);
          w.qkv.q_bias = take(qd), w.qkv.k_bias = take(kvd), w.qkv.v_bias = take(kvd);
          w.input_norm = take(d), w.o = take(size_t(d) * qd), w.post_norm = take(d);
          w.gate = take(size_t(inter) * d), w.up = take(size_t(inter) * d);
          w.down = take(size_t(d) * inter);
          char* c = kv.as<char>() + size_t(l) * cache_elems * 2 * 2;
          caches[size_t(l)] = kernels::PagedKv{c, c + cache_elems * 2, num_blocks, bs};
        }
        std::vector<int32_t> table_h(static_cast<size_t>(num_blocks)), qs(size_t(m) + 1),
            ctx_h(size_t(m), ctx), pos_h(size_t(m), ctx - 1), slot_h(static_cast<size_t>(m));
        std::iota(table_h.begin(), table_h.end(), 0);
        std::shuffle(table_h.begin(), table_h.end(), std::mt19937(7));
        std::iota(qs.begin(), qs.end(), 0);
        for (int i = 0; i < m; ++i)
          slot_h[size_t(i)] =
              table_h[size_t(i * blocks_per_seq + blocks_per_seq - 1)] * bs + bs - 1;
        Buffer table_d(table_h.size() * 4), qs_d(qs.size() * 4), ctx_d(size_t(m) * 4),
            pos_d(size_t(m) * 4), slot_d(size_t(m) * 4), cs(size_t(4096) * hd * 4);
        ops->copy_to_device(table_d.as(), table_h.data(), table_h.size() * 4);
        ops->copy_to_device(qs_d.as(), qs.data(), qs.size() * 4);
        ops->copy_to_device(ctx_d.as(), ctx_h.data(), ctx_h.size() * 4);
        ops->copy_to_device(pos_d.as(), pos_h.data(), pos_h.size() * 4);
        ops->copy_to_device(slot_d.as(), slot_h.data(), slot_h.size() * 4);
        fill_f32(cs.as<float>(), size_t(4096) * hd, ++seed);
        kernels::PagedBatch b;
        b.num_seqs = m, b.num_tokens = m, b.max_q_len = 1, b.max_context_len = ctx;
        b.q_start = qs_d.as<int32_t>(), b.context_len = ctx_d.as<int32_t>();
        b.block_table = table_d.as<int32_t>(), b.max_blocks_per_seq = blocks_per_seq;
        b.positions = pos_d.as<int32_t>(), b.slot_mapping = slot_d.as<int32_t>();
        Buffer xr(size_t(m) * d * 2), q(size_t(m) * qd * 2), attn(size_t(m) * qd * 2),
            h(size_t(m) * inter * 2), part(kernels::Ops::decode_step_partials_bytes(m, s));
        fill_bf16(xr.as(), size_t(m) * d, ++seed);
        kernels::Ops::DecodeStep st;
        st.x = xr.as(), st.d = d, st.inter = inter, st.eps = 1e-6f, st.n_layers = L;
        st.layers = lw.data(), st.caches = caches.data(), st.cos_sin_f32 = cs.as<float>();
        st.q = q.as(), st.h = h.as(), st.partials = part.as();
        const double bytes = double(per_layer) * L * 2 + 2.0 * m * ctx * kvd * 2 * L;
        const std::string size = std::to_string(L) + " layers ctx " + std::to_string(ctx);
        auto linear = [&](const void* in, const void* w, int64_t k) {
          kernels::GemmArgs g;
          g.trans_b = true;
          g.m = m, g.n = d, g.k = k;
          g.a = in, g.lda = k, g.b = w, g.ldb = k;
          g.beta = 1.f, g.c = xr.as(), g.ldc = d, g.c_dtype = DType::BF16;
          ops->gemm(g);
        };
        // Only where the GPU has it (Hopper): a declined call does nothing.
        const std::string one = "decode layers, one kernel" + tok;
        if (run.selected(one, size) && ops->decode_layers(st, b, s))
          run.row(
              one, size, bytes, xr.as(), size_t(m) * d, true, [&] { ops->decode_layers(st, b, s); },
              true, true);
        run.row(
            "decode layers, op by op" + tok, size, bytes, xr.as(), size_t(m) * d, true,
            [&] {
              for (int l = 0; l < L; ++l) {
                const auto& w = lw[size_t(l)];
                ops->norm_qkv_rope_cache(q.as(), xr.as(), w.input_norm, 1e-6f, d, w.qkv,
                                         cs.as<float>(), caches[size_t(l)], b, s);
                ops->paged_attention(attn.as(), q.as(), caches[size_t(l)], b, s);
                linear(attn.as(), w.o, qd);
                ops->norm_gate_up(h.as(), xr.as(), w.post_norm, 1e-6f, w.gate, w.up, m, d, inter);
                linear(h.as(), w.down, inter);
              }
            },
            true, true);
      }
    }
    {  // What a dependent kernel costs in a graph before it does any work
      Buffer words(size_t(1024) * 4);
      SIESTA_CUDA_CHECK(cudaMemset(words.as(), 0, 1024 * 4));
      auto st = static_cast<cudaStream_t>(ops->native_stream());
      for (bool pdl : {false, true})
        for (int blocks : {132, 1024})
          run.row(std::string("kernel chain floor") + (pdl ? " pdl" : ""),
                  std::to_string(blocks) + " blocks", 4.0 * blocks, words.as(), 1024, false,
                  [&] { launch_dependent(chain_kernel, blocks, pdl, st, words.as<int>()); },
                  true, true);
    }
    {  // Dependent kernels that each read 1.5 MiB of weights (a q_proj), before or after the wait
      const int blocks = 56, per_block = int((896 * 896 * 2) / 16 / blocks);
      WeightReplicas w(size_t(blocks) * size_t(per_block) * 16, ++seed);
      Buffer words(size_t(1024) * 4);
      SIESTA_CUDA_CHECK(cudaMemset(words.as(), 0, 1024 * 4));
      auto st = static_cast<cudaStream_t>(ops->native_stream());
      Buffer xbuf(112 * 16);
      fill_bf16(xbuf.as(), 112 * 8, ++seed);
      for (int variant : {0, 1, 2}) {
        const bool before = variant >= 1;
        run.row(std::string("kernel chain + 1.5 MiB loads ") + (before ? "before" : "after") +
                    " wait pdl" + (variant == 2 ? " + stage x" : ""),
                std::to_string(blocks) + " blocks", double(blocks) * per_block * 16, words.as(),
                1024, false,
                [&] {
                  const auto* base = reinterpret_cast<const uint4*>(w.next());
                  if (variant == 2)
                    launch_dependent(chain_load_stage_kernel, blocks, true, st, words.as<int>(),
                                     base, per_block, xbuf.as<const uint4>());
                  else
                    launch_dependent(before ? chain_load_kernel<true> : chain_load_kernel<false>,
                                     blocks, true, st, words.as<int>(), base, per_block);
                },
                true, true);
      }
    }
    {  // Sampling decode rows over the whole vocabulary: greedy at batch 1, temperature at 64
      const int64_t rows_max = 64;
      Buffer logits(size_t(rows_max * vocab) * 2), sink(4);
      fill_bf16(logits.as(), size_t(rows_max * vocab), ++seed, -8.f, 8.f);
      fill_f32(sink.as<float>(), 1, ++seed);  // the finiteness check reads it; sample writes host memory
      for (int64_t n : {int64_t(1), rows_max}) {
        std::vector<kernels::SamplingRow> rows(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
          if (n > 1) rows[size_t(i)] = {0.8f, 0, 1.f, uint64_t(i), 3};
        std::vector<int32_t> token(static_cast<size_t>(n));
        std::vector<float> lp(static_cast<size_t>(n));
        run.row(std::string(n == 1 ? "sample greedy" : "sample temperature") + " batch " +
                    std::to_string(n),
                std::to_string(n) + "x" + std::to_string(vocab), double(n * vocab) * 2, sink.as(),
                1, false,
                [&] { ops->sample(token.data(), lp.data(), logits.as(), n, vocab, rows.data()); },
                /*accumulates=*/true);
      }
    }
    table.note("device: " + device_name());
    table.note("limit: device-to-device cudaMemcpyAsync of 2 GiB, bytes read + written, this run");
    table.note("bytes: fewest an op must move; token_logprobs_backward reads the logits twice "
               "(lse first), so its ceiling is 2/3 of the limit");
    table.note("decode rows: weights cycle through replicas of >= 256 MiB (HBM, not L2), except "
               "the (weights in L2) rows, which read one copy again and again (what the kernel "
               "reaches when bytes come fast); "
               "gemv is Ops::gemm with m rows; decode rows and paged attention are timed as 256 calls in "
               "one CUDA graph, as a decode step runs them; sample includes its host round trip (row parameters, results back, "
               "stream sync)");
    table.note("kernel chain rows: 256 dependent launches in one graph, each waiting on the one "
               "before (griddepcontrol.wait); the 1.5 MiB rows read a q_proj's bytes before or "
               "after that wait (what PDL can hide); time_us is the figure, GB/s is incidental");
    table.note("paged decode: 14 query / 2 KV heads, head_dim 64, block 16; bytes = K and V of "
               "every cached token once (query heads sharing a KV head re-read it through L2)");
    cudaStreamDestroy(st);
    return table.failures() ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_ops: " << e.what() << "\n";
    return 1;
  }
}
