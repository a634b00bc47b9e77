// SwiGLU: h = silu(gate) * up, silu(g) = g * sigmoid(g).
#include <cmath>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::swiglu_forward(void* h, const void* gate, const void* up, int64_t n) {
  float* hf = static_cast<float*>(h);
  const float* g = static_cast<const float*>(gate);
  const float* u = static_cast<const float*>(up);
  for (int64_t i = 0; i < n; ++i) hf[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

// d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g).
void CpuOps::swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate,
                             const void* up, int64_t n) {
  float* dg = static_cast<float*>(dgate);
  float* du = static_cast<float*>(dup);
  const float* d = static_cast<const float*>(dh);
  const float* g = static_cast<const float*>(gate);
  const float* u = static_cast<const float*>(up);
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.f / (1.f + std::exp(-g[i]));
    const float grad = d[i];
    dg[i] = grad * u[i] * s * (1.f + g[i] * (1.f - s));
    du[i] = grad * g[i] * s;
  }
}

}  // namespace siesta::kernels::cpu
