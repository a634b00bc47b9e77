// Host reference of the fused decode ops (Ops::norm_qkv_rope_cache, Ops::norm_gate_up), in
// double precision from the definition: rmsnorm, products, bias, rope (half-split pairs),
// SwiGLU. `round` is applied where a backend stores an activation (bf16 rounding for CUDA, the
// identity for the fp32 CPU backend), so both backends are held to the same formula.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace siesta::kernels::test {

using Rounding = std::function<double(double)>;

struct QkvCase {
  int n = 0, d = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float eps = 1e-6f;
  bool bias = false;
  std::vector<float> x, norm_w, wq, wk, wv, bq, bk, bv;  // weights [out, d]
  std::vector<int32_t> positions;
  std::vector<float> cos_sin;  // [max_pos, head_dim]
  int qd() const { return n_heads * head_dim; }
  int kvd() const { return n_kv_heads * head_dim; }
};

inline std::vector<double> ref_rmsnorm(const std::vector<float>& x, const std::vector<float>& w,
                                       int n, int d, float eps, const Rounding& round) {
  std::vector<double> out(size_t(n) * d);
  for (int t = 0; t < n; ++t) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += double(x[size_t(t * d + j)]) * x[size_t(t * d + j)];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    for (int j = 0; j < d; ++j) out[size_t(t * d + j)] = round(x[size_t(t * d + j)] * r * w[size_t(j)]);
  }
  return out;
}

// y[t, o] = round(xn[t, :] . W[o, :]) (+ bias, rounded again).
inline std::vector<double> ref_linear(const std::vector<double>& xn, const std::vector<float>& W,
                                      const std::vector<float>* bias, int n, int d, int out,
                                      const Rounding& round) {
  std::vector<double> y(size_t(n) * out);
  for (int t = 0; t < n; ++t)
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int j = 0; j < d; ++j) s += xn[size_t(t * d + j)] * W[size_t(o) * d + j];
      s = round(s);
      if (bias) s = round(s + (*bias)[size_t(o)]);
      y[size_t(t * out + o)] = s;
    }
  return y;
}

inline void ref_rope(std::vector<double>& x, const QkvCase& c, int heads, const Rounding& round) {
  const int hd = c.head_dim, half = hd / 2;
  for (int t = 0; t < c.n; ++t)
    for (int h = 0; h < heads; ++h)
      for (int j = 0; j < half; ++j) {
        const float* cs = c.cos_sin.data() + size_t(c.positions[size_t(t)]) * hd;
        double& a = x[size_t((t * heads + h) * hd + j)];
        double& b = x[size_t((t * heads + h) * hd + j + half)];
        const double a0 = a, b0 = b;
        a = round(a0 * cs[j] - b0 * cs[half + j]);
        b = round(b0 * cs[j] + a0 * cs[half + j]);
      }
}

struct QkvRef {
  std::vector<double> q, k, v;  // [n, qd], [n, kvd] x2
};

inline QkvRef ref_norm_qkv_rope(const QkvCase& c, const Rounding& round) {
  const auto xn = ref_rmsnorm(c.x, c.norm_w, c.n, c.d, c.eps, round);
  QkvRef r;
  r.q = ref_linear(xn, c.wq, c.bias ? &c.bq : nullptr, c.n, c.d, c.qd(), round);
  r.k = ref_linear(xn, c.wk, c.bias ? &c.bk : nullptr, c.n, c.d, c.kvd(), round);
  r.v = ref_linear(xn, c.wv, c.bias ? &c.bv : nullptr, c.n, c.d, c.kvd(), round);
  ref_rope(r.q, c, c.n_heads, round);
  ref_rope(r.k, c, c.n_kv_heads, round);
  return r;
}

inline std::vector<double> ref_norm_gate_up(const std::vector<float>& x,
                                            const std::vector<float>& norm_w, float eps,
                                            const std::vector<float>& wg,
                                            const std::vector<float>& wu, int n, int d, int inter,
                                            const Rounding& round) {
  const auto xn = ref_rmsnorm(x, norm_w, n, d, eps, round);
  const auto g = ref_linear(xn, wg, nullptr, n, d, inter, round);
  const auto u = ref_linear(xn, wu, nullptr, n, d, inter, round);
  std::vector<double> h(g.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = round(g[i] / (1.0 + std::exp(-g[i])) * u[i]);
  return h;
}

}  // namespace siesta::kernels::test
