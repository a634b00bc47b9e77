// RMSNorm forward/backward. Statistics in double per row: rows are short (hidden size) and the
// reference should not be the source of error when comparing backends.
#include <cmath>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::rmsnorm_forward(void* out, float* rstd_f32, const void* x, const void* w, int64_t n,
                             int64_t d, float eps) {
  float* o = static_cast<float*>(out);
  const float* xf = static_cast<const float*>(x);
  const float* wf = static_cast<const float*>(w);
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = xf + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(xi[j]) * xi[j];
    float r = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
    if (rstd_f32) rstd_f32[i] = r;
    for (int64_t j = 0; j < d; ++j) o[i * d + j] = xi[j] * r * wf[j];
  }
}

// y_j = x_j r w_j with r = (mean(x^2) + eps)^-1/2, so
// dx_j = r w_j g_j - r^3 / d * x_j * sum_k g_k w_k x_k and dw_j = sum_rows g_j x_j r.
void CpuOps::rmsnorm_backward(void* dx, float* dw_f32, const void* dout, const void* x,
                              const void* w, const float* rstd_f32, int64_t n, int64_t d) {
  float* dxf = static_cast<float*>(dx);
  const float* g = static_cast<const float*>(dout);
  const float* xf = static_cast<const float*>(x);
  const float* wf = static_cast<const float*>(w);
  for (int64_t i = 0; i < n; ++i) {
    const float* gi = g + i * d;
    const float* xi = xf + i * d;
    const double r = rstd_f32[i];
    double dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += double(gi[j]) * wf[j] * xi[j];
    const double c = r * r * r * dot / double(d);
    for (int64_t j = 0; j < d; ++j) {
      dxf[i * d + j] += float(r * wf[j] * gi[j] - c * xi[j]);
      dw_f32[j] += float(double(gi[j]) * xi[j] * r);
    }
  }
}

}  // namespace siesta::kernels::cpu
