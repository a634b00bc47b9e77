// bf16 GEMM throughput of the CUDA op table (ops->gemm: cublasGemmEx, fp32 accumulation) on
// square sizes and on the matrix products of a 0.5b training step (Qwen2.5-0.5B shapes,
// 8 x 1024 tokens): forward, data gradient and fp32-accumulated weight gradient.
// Limit: the best cuBLAS throughput measured in this run, i.e. the fastest of cuBLASLt's
// heuristic algorithms (up to 8 per shape) over all shapes. Check: ops->gemm's result equals
// cuBLASLt's on the same inputs (relative error < 1e-2). The HBM row is the device-to-device
// copy bandwidth (bytes read + written) through ops->copy_on_device vs raw cudaMemcpyAsync.
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "gpu_bench.cuh"
#include "siesta/kernels/device.hpp"
#include "siesta/kernels/ops.hpp"

using namespace siesta;
using namespace siesta::bench;
using namespace siesta::bench::gpu;
using siesta::kernels::GemmArgs;

namespace {

struct GemmShape {
  std::string name;
  bool ta, tb;
  int64_t m, n, k;
  DType c_dtype;
  float beta;
};

__global__ void rel_err_partials(const void* a, const void* b, size_t n, bool f32, double* out) {
  float num = 0, den = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const float x = f32 ? static_cast<const float*>(a)[i]
                        : __bfloat162float(static_cast<const __nv_bfloat16*>(a)[i]);
    const float y = f32 ? static_cast<const float*>(b)[i]
                        : __bfloat162float(static_cast<const __nv_bfloat16*>(b)[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  atomicAdd(out, double(num));
  atomicAdd(out + 1, double(den));
}

double device_rel_err(const void* a, const void* b, size_t n, bool f32) {
  Buffer acc(2 * sizeof(double));
  SIESTA_CUDA_CHECK(cudaMemset(acc.as(), 0, acc.bytes()));
  rel_err_partials<<<1024, 256>>>(a, b, n, f32, acc.as<double>());
  SIESTA_CUDA_CHECK(cudaGetLastError());
  double h[2];
  SIESTA_CUDA_CHECK(cudaMemcpy(h, acc.as(), sizeof h, cudaMemcpyDeviceToHost));
  return std::sqrt(h[0] / std::max(h[1], 1e-300));
}

#define LT_CHECK(x) SIESTA_CUBLAS_CHECK(x)

// The fastest cuBLASLt heuristic algorithm for row-major C = op(A) op(B) (same column-major
// swap as ops->gemm). Returns TFLOP/s and leaves its result in c.
double best_lt_tflops(cublasLtHandle_t lt, cudaStream_t st, void* ws, size_t ws_bytes,
                      const Options& o, const GemmArgs& g) {
  cublasLtMatmulDesc_t op;
  LT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op1 = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op2 = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof op1));
  LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof op2));
  cublasLtMatrixLayout_t l1, l2, lc;
  // First operand: B viewed column-major; second: A; C is n x m column-major.
  LT_CHECK(cublasLtMatrixLayoutCreate(&l1, CUDA_R_16BF, g.trans_b ? g.k : g.n,
                                      g.trans_b ? g.n : g.k, g.ldb));
  LT_CHECK(cublasLtMatrixLayoutCreate(&l2, CUDA_R_16BF, g.trans_a ? g.m : g.k,
                                      g.trans_a ? g.k : g.m, g.lda));
  const cudaDataType_t ct = g.c_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  LT_CHECK(cublasLtMatrixLayoutCreate(&lc, ct, g.n, g.m, g.ldc));
  cublasLtMatmulPreference_t pref;
  LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ws_bytes, sizeof ws_bytes));
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  LT_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, l1, l2, lc, lc, pref, 8, res, &found));
  double best_ms = INFINITY;
  int best = -1;
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
  for (int i = 0; i < found; ++i) {
    auto run = [&] {
      LT_CHECK(cublasLtMatmul(lt, op, &g.alpha, g.b, l1, g.a, l2, &g.beta, g.c, lc, g.c, lc,
                              &res[i].algo, ws, ws_bytes, st));
    };
    const int iters = std::max(1, int(3e-3 / (flops / 700e12)));  // ~3 ms per sample
    const double ms = time_ms(o, iters, run, [&] { SIESTA_CUDA_CHECK(cudaStreamSynchronize(st)); });
    if (ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  if (best >= 0 && g.beta == 0.f) {  // leave the best algorithm's result for the check
    LT_CHECK(cublasLtMatmul(lt, op, &g.alpha, g.b, l1, g.a, l2, &g.beta, g.c, lc, g.c, lc,
                            &res[best].algo, ws, ws_bytes, st));
    SIESTA_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(l1);
  cublasLtMatrixLayoutDestroy(l2);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  return best >= 0 ? flops / (best_ms * 1e-3) / 1e12 : 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv, "bench_gemm",
                            "bf16 GEMM TFLOP/s of ops->gemm vs the best cuBLASLt algorithm");
  if (!kernels::cuda_available()) {
    std::cout << "bench_gemm: no CUDA GPU (" << kernels::cuda_status().error << "); skipped\n";
    return 0;
  }
  try {
    auto ops = kernels::make_cuda_ops(0);
    cudaStream_t st;
    SIESTA_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cublasLtHandle_t lt;
    LT_CHECK(cublasLtCreate(&lt));
    const size_t ws_bytes = size_t(32) << 20;
    Buffer ws(ws_bytes);
    Table table("bench_gemm", o);

    {  // HBM limit: device-to-device copy, bytes read + written
      const size_t bytes = o.quick ? (size_t(256) << 20) : (size_t(2) << 30);
      const double raw = copy_bandwidth_gbps(st, o, bytes);
      Buffer a(bytes), b(bytes);
      fill_bf16(a.as(), bytes / 2, 7);
      const double ms = time_ms(o, 10, [&] { ops->copy_on_device(b.as(), a.as(), bytes); },
                                [&] { ops->synchronize(); });
      const double got = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
      table.row({{"shape", std::string("copy ") + fmt_bytes(double(bytes))}, {"m", int64_t(0)},
                 {"n", int64_t(0)}, {"k", int64_t(0)}, {"c", std::string("-")},
                 {"reference", raw}},
                got, raw, "GB/s", finite_check(b.as(), bytes / 2, true));
    }

    const int64_t T = 8 * 1024, hid = 896, inter = 4864, vocab = 151936, kv = 128;
    std::vector<GemmShape> shapes = {{"square 4096", false, false, 4096, 4096, 4096, DType::BF16, 0.f},
                                 {"square 8192", false, false, 8192, 8192, 8192, DType::BF16, 0.f}};
    struct Proj { const char* name; int64_t out, in; };
    const std::vector<Proj> projs = {{"q/o_proj", hid, hid},   {"k/v_proj", kv, hid},
                                     {"gate/up_proj", inter, hid}, {"down_proj", hid, inter},
                                     {"lm_head", vocab, hid}};
    if (!o.quick)
      for (const Proj& p : projs) {
        // y = x W^T; dx = dy W; dW += dy^T x (fp32 master gradient)
        shapes.push_back({std::string(p.name) + " fwd", false, true, T, p.out, p.in, DType::BF16, 0.f});
        shapes.push_back({std::string(p.name) + " dX", false, false, T, p.in, p.out, DType::BF16, 0.f});
        shapes.push_back({std::string(p.name) + " dW", true, false, p.out, p.in, T, DType::F32, 1.f});
      }

    struct Result { GemmShape s; double ops_tflops, lt_tflops; std::string check; };
    std::vector<Result> results;
    double peak = 0;
    uint64_t seed = 11;
    for (const GemmShape& s : shapes) {
      GemmArgs g;
      g.trans_a = s.ta; g.trans_b = s.tb;
      g.m = s.m; g.n = s.n; g.k = s.k;
      g.lda = s.ta ? s.m : s.k;
      g.ldb = s.tb ? s.k : s.n;
      g.ldc = s.n;
      g.beta = s.beta;
      g.c_dtype = s.c_dtype;
      const size_t na = size_t(s.m * s.k), nb = size_t(s.k * s.n), nc = size_t(s.m * s.n);
      const bool f32 = s.c_dtype == DType::F32;
      Buffer a(na * 2), b(nb * 2), c(nc * (f32 ? 4 : 2)), c_ref(nc * (f32 ? 4 : 2));
      fill_bf16(a.as(), na, ++seed);
      fill_bf16(b.as(), nb, ++seed);
      const uint64_t c_seed = ++seed;
      auto init_c = [&](void* p) {
        if (f32) fill_f32(static_cast<float*>(p), nc, c_seed);
        else poison(p, nc * 2);
      };
      g.a = a.as(); g.b = b.as();
      // Check: one call each from the same C (poisoned when beta = 0, so unwritten shows).
      init_c(c.as());
      init_c(c_ref.as());
      SIESTA_CUDA_CHECK(cudaDeviceSynchronize());
      g.c = c.as();
      ops->gemm(g);
      ops->synchronize();
      g.c = c_ref.as();
      const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
      const double lt_tflops = best_lt_tflops(lt, st, ws.as(), ws_bytes, o, g);
      std::string check = "ok";
      if (s.beta == 0.f) {
        const double err = device_rel_err(c.as(), c_ref.as(), nc, f32);
        if (!(err < 1e-2)) check = "rel err " + std::to_string(err) + " vs cuBLASLt";
      }
      if (check == "ok") check = finite_check(c.as(), nc, !f32);
      g.c = c.as();
      const int iters = std::max(1, int(3e-3 / (flops / 700e12)));
      const double ms = time_ms(o, iters, [&] { ops->gemm(g); }, [&] { ops->synchronize(); });
      const double tf = flops / (ms * 1e-3) / 1e12;
      peak = std::max(peak, lt_tflops);
      results.push_back({s, tf, lt_tflops, check});
      std::cerr << "measured " << s.name << ": ops " << tf << " TFLOP/s, cuBLASLt best "
                << lt_tflops << "\n";
    }
    for (const Result& r : results)
      table.row({{"shape", r.s.name}, {"m", r.s.m}, {"n", r.s.n}, {"k", r.s.k},
                 {"c", std::string(dtype_name(r.s.c_dtype))}, {"reference", r.lt_tflops}},
                r.ops_tflops, peak, "TFLOP/s", r.check);
    table.note("device: " + device_name());
    table.note("achieved: ops->gemm (cublasGemmEx, bf16 in, fp32 accumulate); limit: best "
               "cuBLASLt heuristic algorithm over all shapes in this run (" +
               std::to_string(peak) + " TFLOP/s); reference: best cuBLASLt for that shape");
    table.note("shapes: Qwen2.5-0.5B (hidden 896, intermediate 4864, vocab 151936, kv 2x64), "
               "tokens 8 x 1024; dW accumulates into fp32 (beta 1), checked for finiteness only");
    table.note("copy row: ops->copy_on_device, GB/s = bytes read + written; limit and reference = raw "
               "cudaMemcpyAsync device-to-device (the HBM limit of bench_ops)");
    cublasLtDestroy(lt);
    cudaStreamDestroy(st);
    return table.failures() ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_gemm: " << e.what() << "\n";
    return 1;
  }
}
