// Matrix products through OpenBLAS cblas_sgemm, plus the bias and residual helpers around them.
#include <cblas.h>

#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::gemm(const GemmArgs& g) {
  if (g.c_dtype != DType::F32)
    throw KernelError("cpu gemm: c_dtype " + std::string(dtype_name(g.c_dtype)) +
                      " requested; the CPU backend computes in F32 only");
  if (g.m < 0 || g.n < 0 || g.k < 0)
    throw KernelError("cpu gemm: negative shape m=" + std::to_string(g.m) +
                      " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k));
  if (g.m == 0 || g.n == 0) return;
  float* c = static_cast<float*>(g.c);
  if (g.k == 0) {  // BLAS rejects k = 0 on some builds; the product is empty, C = beta C.
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) c[i * g.ldc + j] = g.beta == 0.f ? 0.f : g.beta * c[i * g.ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, blasint(g.m), blasint(g.n), blasint(g.k),
              g.alpha, static_cast<const float*>(g.a), blasint(g.lda),
              static_cast<const float*>(g.b), blasint(g.ldb), g.beta, c, blasint(g.ldc));
}

void CpuOps::add_bias(void* x, const void* bias, int64_t n, int64_t d) {
  float* xf = static_cast<float*>(x);
  const float* b = static_cast<const float*>(bias);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) xf[i * d + j] += b[j];
}

void CpuOps::bias_backward(float* dbias, const void* dy, int64_t n, int64_t d) {
  const float* g = static_cast<const float*>(dy);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) dbias[j] += g[i * d + j];
}

void CpuOps::add_inplace(void* x, const void* y, int64_t n) {
  float* xf = static_cast<float*>(x);
  const float* yf = static_cast<const float*>(y);
  for (int64_t i = 0; i < n; ++i) xf[i] += yf[i];
}

}  // namespace siesta::kernels::cpu
