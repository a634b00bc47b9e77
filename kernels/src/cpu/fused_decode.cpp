// The fused decode ops on the CPU: the op-by-op sequence they stand for, run through this
// backend's own ops, so CPU runs take the same model path as CUDA runs and the reference for
// the CUDA kernels is the sequence itself.
#include <string>

#include "cpu_ops.hpp"

namespace siesta::kernels::cpu {
namespace {

constexpr int kMaxTokens = 8;  // as the CUDA backend, so both backends split work alike

void linear(CpuOps& ops, float* y, const float* x, const void* w, int64_t n, int64_t out,
            int64_t in) {
  GemmArgs g;
  g.trans_b = true;
  g.m = n, g.n = out, g.k = in;
  g.a = x, g.lda = in;
  g.b = w, g.ldb = in;
  g.c = y, g.ldc = out;
  g.c_dtype = DType::F32;
  ops.gemm(g);
}

void check_tokens(int64_t n, const char* op) {
  if (n < 0 || n > kMaxTokens)
    throw KernelError(std::string(op) + ": " + std::to_string(n) +
                      " tokens, allowed 0.." + std::to_string(kMaxTokens) +
                      " (fused_decode_max_tokens)");
}

}  // namespace

int CpuOps::fused_decode_max_tokens(int64_t hidden) const { return hidden > 0 ? kMaxTokens : 0; }

void CpuOps::norm_qkv_rope_cache(void* q_out, const void* x, const void* norm_w, float eps,
                                 int64_t d, const QkvWeights& w, const float* cos_sin_f32,
                                 const PagedKv& cache, const PagedBatch& b, const AttnShape& s) {
  const int64_t n = b.num_tokens;
  check_tokens(n, "norm_qkv_rope_cache");
  if (n == 0) return;
  const int64_t qd = int64_t(s.n_heads) * s.head_dim, kvd = int64_t(s.n_kv_heads) * s.head_dim;
  fused_xn_.resize(size_t(n * d));
  fused_k_.resize(size_t(n * kvd));
  fused_v_.resize(size_t(n * kvd));
  auto* q = static_cast<float*>(q_out);
  rmsnorm_forward(fused_xn_.data(), nullptr, x, norm_w, n, d, eps);
  linear(*this, q, fused_xn_.data(), w.q, n, qd, d);
  linear(*this, fused_k_.data(), fused_xn_.data(), w.k, n, kvd, d);
  linear(*this, fused_v_.data(), fused_xn_.data(), w.v, n, kvd, d);
  if (w.q_bias) add_bias(q, w.q_bias, n, qd);
  if (w.k_bias) add_bias(fused_k_.data(), w.k_bias, n, kvd);
  if (w.v_bias) add_bias(fused_v_.data(), w.v_bias, n, kvd);
  rope(q, b.positions, n, s.n_heads, s.head_dim, cos_sin_f32, false);
  rope(fused_k_.data(), b.positions, n, s.n_kv_heads, s.head_dim, cos_sin_f32, false);
  kv_cache_write(cache, fused_k_.data(), fused_v_.data(), b, s);
}

void CpuOps::norm_gate_up(void* h, const void* x, const void* norm_w, float eps,
                          const void* gate_w, const void* up_w, int64_t n, int64_t d,
                          int64_t inter) {
  check_tokens(n, "norm_gate_up");
  if (n == 0) return;
  fused_xn_.resize(size_t(n * d));
  fused_up_.resize(size_t(n * inter));
  auto* gate = static_cast<float*>(h);  // h holds the gate rows until swiglu overwrites them
  rmsnorm_forward(fused_xn_.data(), nullptr, x, norm_w, n, d, eps);
  linear(*this, gate, fused_xn_.data(), gate_w, n, inter, d);
  linear(*this, fused_up_.data(), fused_xn_.data(), up_w, n, inter, d);
  swiglu_forward(h, gate, fused_up_.data(), n * inter);
}

}  // namespace siesta::kernels::cpu
