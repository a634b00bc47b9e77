// Token embedding gather and its scatter-add backward.
#include <cstring>
#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::embedding_forward(void* out, const void* table, const int32_t* tokens, int64_t n,
                               int64_t d) {
  float* o = static_cast<float*>(out);
  const float* t = static_cast<const float*>(table);
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0)
      throw KernelError("embedding_forward: token " + std::to_string(tokens[i]) + " at row " +
                        std::to_string(i) + " is negative");
    std::memcpy(o + i * d, t + int64_t(tokens[i]) * d, size_t(d) * sizeof(float));
  }
}

void CpuOps::embedding_backward(float* dtable, const void* dout, const int32_t* tokens, int64_t n,
                                int64_t d) {
  const float* g = static_cast<const float*>(dout);
  for (int64_t i = 0; i < n; ++i) {
    float* row = dtable + int64_t(tokens[i]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += g[i * d + j];
  }
}

}  // namespace siesta::kernels::cpu
