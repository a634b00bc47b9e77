// Training throughput and trainer offload/restore, each against a limit measured in the same
// run:
//  - tokens/s of Trainer::train_step (SFT objective, full-length rows) vs the tokens/s the
//    step's GEMMs alone would allow at the throughput Ops::gemm reaches on the very same
//    shapes (forward, dX and dW of every linear layer and the lm_head); MFU is reported
//    against that measured GEMM throughput.
//  - offload_state / restore_state of the trainer (fp32 params + AdamW moments) in GB/s vs
//    the pinned host<->device copy bandwidth (plain memcpy bandwidth on the CPU backend).
// Default: the 0.5b preset at seq 1024 on cuda:0. --quick: the tiny preset on the CPU.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "harness.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/train.hpp"

using namespace siesta;
using namespace siesta::train;

namespace {

struct Args {
  std::string preset = "0.5b";
  int seq = 1024;
  int rows = 8;          // rows per step
  int micro = 2;         // rows per forward/backward
};

Args parse(const bench::Options& o) {
  Args a;
  if (o.quick) a = {"tiny", 64, 8, 4};
  for (size_t i = 0; i < o.rest.size(); ++i) {
    const std::string& k = o.rest[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= o.rest.size()) {
        std::cerr << "bench_train_step: " << k << " needs a value\n";
        std::exit(2);
      }
      return o.rest[++i];
    };
    if (k == "--preset") a.preset = val();
    else if (k == "--seq") a.seq = std::stoi(val());
    else if (k == "--rows") a.rows = std::stoi(val());
    else if (k == "--micro") a.micro = std::stoi(val());
    else {
      std::cerr << "bench_train_step: unknown option " << k
                << " (allowed: --preset NAME --seq N --rows N --micro N, plus the harness's)\n";
      std::exit(2);
    }
  }
  return a;
}

// Time of the GEMMs of one forward+backward over m token rows, measured through Ops::gemm.
struct GemmLimit {
  double seconds = 0;   // per micro-batch
  double flops = 0;     // per micro-batch
};

GemmLimit measure_gemms(kernels::Ops& ops, allocator::Pool& pool, const model::ModelConfig& c,
                        int64_t m, const bench::Options& o) {
  const int64_t h = c.hidden_size, q = int64_t(c.num_attention_heads) * c.head_dim,
                kv = int64_t(c.num_key_value_heads) * c.head_dim, f = c.intermediate_size,
                v = c.vocab_size;
  struct Linear {
    int64_t in, out, count;
  };
  const std::vector<Linear> linears = {{h, q, c.num_hidden_layers},  {h, kv, 2 * c.num_hidden_layers},
                                       {q, h, c.num_hidden_layers},  {h, f, 2 * c.num_hidden_layers},
                                       {f, h, c.num_hidden_layers},  {h, v, 1}};
  int64_t max_in = 0, max_out = 0, max_w = 0;
  for (auto& l : linears) {
    max_in = std::max(max_in, l.in);
    max_out = std::max(max_out, l.out);
    max_w = std::max(max_w, l.in * l.out);
  }
  const size_t act = dtype_size(ops.act_dtype());
  auto x = pool.allocate(uint64_t(m * max_in) * act, "bench", "bench.x");
  auto dy = pool.allocate(uint64_t(m * max_out) * act, "bench", "bench.dy");
  auto w = pool.allocate(uint64_t(max_w) * act, "bench", "bench.w");
  auto dx = pool.allocate(uint64_t(m * max_in) * act, "bench", "bench.dx");
  auto dw = pool.allocate(uint64_t(max_w) * 4, "bench", "bench.dw");
  for (auto* a : {&x, &dy, &w, &dx}) ops.fill_zero(a->ptr, a->bytes);
  ops.fill_zero(dw.ptr, dw.bytes);
  GemmLimit lim;
  for (const auto& l : linears) {
    auto run = [&] {
      // forward y[m, out] = x[m, in] . W[out, in]^T
      ops.gemm({false, true, m, l.out, l.in, 1.f, x.ptr, l.in, w.ptr, l.in, 0.f, dy.ptr, l.out,
                ops.act_dtype()});
      // dX[m, in] = dY[m, out] . W[out, in]
      ops.gemm({false, false, m, l.in, l.out, 1.f, dy.ptr, l.out, w.ptr, l.in, 0.f, dx.ptr, l.in,
                ops.act_dtype()});
      // dW[out, in] += dY^T . X (fp32 accumulation, as the trainer's gradients)
      ops.gemm({true, false, l.out, l.in, m, 1.f, dy.ptr, l.out, x.ptr, l.in, 1.f, dw.ptr, l.in,
                DType::F32});
      ops.synchronize();
    };
    bench::Timing t = bench::time_ms(o, run);
    lim.seconds += t.median_ms * 1e-3 * double(l.count);
    lim.flops += 6.0 * double(m) * double(l.in) * double(l.out) * double(l.count);
  }
  for (auto* a : {&x, &dy, &w, &dx, &dw}) pool.free(*a);
  return lim;
}

// Host<->device copy bandwidth with pinned host memory (GB/s), each direction's median.
double copy_bandwidth_gbps(kernels::Ops& ops, allocator::Pool& pool, uint64_t bytes,
                           const bench::Options& o) {
  auto dev = pool.allocate(bytes, "bench", "bench.copy");
  ops.fill_zero(dev.ptr, bytes);
  void* host = nullptr;
  bool pinned = false;
#ifdef SIESTA_WITH_CUDA
  if (ops.backend() == kernels::Backend::Cuda) {
    if (cudaMallocHost(&host, bytes) != cudaSuccess) host = nullptr;
    pinned = host != nullptr;
  }
#endif
  std::vector<char> fallback;
  if (!host) {
    fallback.resize(bytes, 1);
    host = fallback.data();
  }
  bench::Timing d2h = bench::time_ms(o, [&] {
    ops.copy_to_host(host, dev.ptr, bytes);
    ops.synchronize();
  });
  bench::Timing h2d = bench::time_ms(o, [&] {
    ops.copy_to_device(dev.ptr, host, bytes);
    ops.synchronize();
  });
#ifdef SIESTA_WITH_CUDA
  if (pinned) cudaFreeHost(host);
#endif
  (void)pinned;
  pool.free(dev);
  return 2.0 * double(bytes) / ((d2h.median_ms + h2d.median_ms) * 1e-3) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Options o = bench::parse_options(argc, argv, "train_step",
                                          "trainer tokens/s (MFU vs measured GEMM) and offload");
  if (o.quick) o.repeats = std::min(o.repeats, 3);
  const Args a = parse(o);
  const Device dev = o.quick ? Device::cpu() : Device::cuda(0);
  std::unique_ptr<kernels::Ops> ops;
  try {
    ops = kernels::make_ops(dev);
  } catch (const std::exception& e) {
    std::cerr << "bench_train_step: no usable " << dev.str() << " (" << e.what()
              << "); run with --quick for the CPU backend\n";
    return 1;
  }
  const model::ModelConfig cfg = model::load_preset(a.preset);
  const uint64_t state_bytes = uint64_t(model::weights_numel(cfg)) * 12;   // params + m + v
  auto pool = allocator::Pool::create(
      {.device = dev, .chunk_bytes = o.quick ? (64ull << 20) : (1ull << 30),
       .pinned_backup_bytes = state_bytes + (256ull << 20)});
  bench::Table table("train_step", o);
  const std::string shape = a.preset + " " + std::to_string(a.rows) + "x" + std::to_string(a.seq);

  // 1. The limit: the step's GEMMs at measured throughput.
  const GemmLimit g = measure_gemms(*ops, *pool, cfg, int64_t(a.micro) * a.seq, o);
  const int micro_batches = (a.rows + a.micro - 1) / a.micro;
  const double tokens = double(a.rows) * a.seq;
  const double gemm_step_s = g.seconds * micro_batches;
  const double gemm_tflops = g.flops / g.seconds / 1e12;

  // 2. The trainer.
  TrainerOptions to;
  to.lr = {.peak_lr = 1e-5, .min_lr = 1e-5};
  to.micro_batch_rows = a.micro;
  to.max_seq_len = a.seq;
  Trainer trainer(cfg, to, *ops, *pool);
  trainer.init_random(1);
  TrainBatch b;
  b.rows = a.rows;
  b.cols = a.seq;
  Rng rng(3);
  for (int i = 0; i < a.rows * a.seq; ++i) {
    b.tokens.push_back(int32_t(rng.below(uint64_t(std::min(cfg.vocab_size, 256)))));
    b.mask.push_back(i % a.seq == 0 ? 0.f : 1.f);
  }
  StepStats last;
  bench::Timing ts = bench::time_ms(o, [&] { last = trainer.train_step(b); });
  const double tok_s = tokens / (ts.median_ms * 1e-3);
  // Model FLOPs per token: 6 x matmul parameters (linears + lm_head) + causal attention
  // (QK^T and PV: 2 x 2 x q_dim x seq/2 per layer forward, x3 with backward).
  const double q_dim = double(cfg.num_attention_heads) * cfg.head_dim;
  const double flops_per_token = g.flops / (double(a.micro) * a.seq) +
                                 3.0 * 2.0 * q_dim * a.seq * cfg.num_hidden_layers;
  const double achieved_tflops = flops_per_token * tok_s / 1e12;
  const std::string ok = std::isfinite(last.loss) && last.loss > 0 ? "ok" : "loss not finite";
  table.row({{"what", std::string("train tokens/s")}, {"shape", shape}, {"device", dev.str()}},
            tok_s, tokens / gemm_step_s, "tok/s", ok);
  table.row({{"what", std::string("MFU vs measured GEMM")}, {"shape", shape}, {"device", dev.str()}},
            achieved_tflops, gemm_tflops, "TFLOP/s", ok);

  // 3. Offload / restore of the trainer state vs pinned copy bandwidth.
  const double bw = copy_bandwidth_gbps(*ops, *pool, std::min<uint64_t>(state_bytes / 3, 1ull << 30), o);
  const auto before = trainer.master_weights_host();
  bench::Timing off = bench::time_ms(o, [&] {
    trainer.offload_state();
    trainer.restore_state();
  });
  // The two directions separately, once more, for the table.
  auto t0 = std::chrono::steady_clock::now();
  trainer.offload_state();
  auto t1 = std::chrono::steady_clock::now();
  trainer.restore_state();
  auto t2 = std::chrono::steady_clock::now();
  const auto after = trainer.master_weights_host();
  const std::string exact =
      std::memcmp(before.data(), after.data(), before.size() * 4) == 0 ? "ok" : "state changed";
  const double off_s = std::chrono::duration<double>(t1 - t0).count();
  const double on_s = std::chrono::duration<double>(t2 - t1).count();
  table.row({{"what", std::string("offload_state")}, {"shape", bench::fmt_bytes(double(state_bytes))},
             {"device", dev.str()}},
            double(state_bytes) / off_s / 1e9, bw, "GB/s", exact);
  table.row({{"what", std::string("restore_state")}, {"shape", bench::fmt_bytes(double(state_bytes))},
             {"device", dev.str()}},
            double(state_bytes) / on_s / 1e9, bw, "GB/s", exact);
  table.row({{"what", std::string("offload+restore")}, {"shape", bench::fmt_bytes(double(state_bytes))},
             {"device", dev.str()}},
            2.0 * double(state_bytes) / (off.median_ms * 1e-3) / 1e9, bw, "GB/s", exact);
  table.note("limit of tokens/s: tokens / (time of the step's GEMMs via Ops::gemm on the same "
             "shapes, " + std::to_string(micro_batches) + " micro-batches of " +
             std::to_string(a.micro) + " rows)");
  table.note("MFU: model FLOPs (6 x matmul params + causal attention) per second vs the measured "
             "GEMM TFLOP/s");
  table.note("limit of offload/restore: " +
             std::string(dev.is_cuda() ? "pinned" : "memcpy") +
             " host<->device copy bandwidth (mean of both directions), measured in this run; "
             "state = fp32 params + AdamW m and v");
  return table.failures() ? 1 : 0;
}
