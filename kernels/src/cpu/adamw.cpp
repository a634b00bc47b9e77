// Optimizer ops on fp32 buffers: squared norm (for clipping), scaling, AdamW with decoupled
// weight decay and bias correction.
#include <cmath>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::sum_squares(float* out_f32, const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  *out_f32 += float(s);
}

void CpuOps::scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void CpuOps::adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& h) {
  const double bc1 = 1.0 - std::pow(double(h.beta1), double(h.step));
  const double bc2 = 1.0 - std::pow(double(h.beta2), double(h.step));
  const float step_size = float(double(h.lr) / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  for (int64_t i = 0; i < n; ++i) {
    m[i] = h.beta1 * m[i] + (1.f - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1.f - h.beta2) * g[i] * g[i];
    const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + h.eps;
    p[i] -= step_size * m[i] / denom + h.lr * h.weight_decay * p[i];
  }
}

}  // namespace siesta::kernels::cpu
