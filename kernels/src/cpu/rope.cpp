// Rotary embeddings (half-split pairing, as HF Llama/Qwen2) and the host cos/sin table.
#include <cmath>
#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels {

std::vector<float> rope_cos_sin_table(int max_pos, int head_dim, double theta,
                                      double linear_scaling) {
  if (max_pos <= 0 || head_dim <= 0 || head_dim % 2 != 0 || theta <= 0 || linear_scaling <= 0)
    throw KernelError("rope_cos_sin_table(max_pos=" + std::to_string(max_pos) +
                      ", head_dim=" + std::to_string(head_dim) + ", theta=" +
                      std::to_string(theta) + ", scaling=" + std::to_string(linear_scaling) +
                      "): needs max_pos > 0, an even head_dim > 0, theta > 0, scaling > 0");
  const int half = head_dim / 2;
  std::vector<float> t(size_t(max_pos) * head_dim);
  for (int p = 0; p < max_pos; ++p) {
    for (int j = 0; j < half; ++j) {
      // HF: inv_freq = 1 / theta^(2j / head_dim); linear scaling divides the position.
      double inv_freq = 1.0 / std::pow(theta, double(2 * j) / double(head_dim));
      double angle = (double(p) / linear_scaling) * inv_freq;
      t[size_t(p) * head_dim + j] = float(std::cos(angle));
      t[size_t(p) * head_dim + half + j] = float(std::sin(angle));
    }
  }
  return t;
}

namespace cpu {

void CpuOps::rope(void* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
                  const float* cos_sin, bool inverse) {
  float* xf = static_cast<float*>(x);
  const int half = head_dim / 2;
  const float sign = inverse ? -1.f : 1.f;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* cs = cos_sin + int64_t(positions[t]) * head_dim;
    for (int h = 0; h < n_heads; ++h) {
      float* v = xf + (t * n_heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        const float c = cs[j], s = sign * cs[half + j];
        const float a = v[j], b = v[j + half];
        v[j] = a * c - b * s;
        v[j + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace cpu
}  // namespace siesta::kernels
