// Building blocks shared by the inference and training passes: linear layers as GEMMs in the
// HF [out, in] weight layout, and a bump carver for caller-provided workspaces.
#pragma once

#include <cstddef>

#include "siesta/kernels/ops.hpp"

namespace siesta::model::detail {

// Carves aligned sub-buffers from a workspace; with base == nullptr it only measures.
struct Carver {
  std::byte* base;
  size_t used = 0;
  void* take(size_t bytes) {
    used = (used + 255) / 256 * 256;  // 256 B: vector loads and cuBLAS like aligned operands
    void* p = base ? base + used : nullptr;
    used += bytes;
    return p;
  }
  float* take_f32(size_t n) { return static_cast<float*>(take(n * sizeof(float))); }
};

inline void* at_row(void* p, int64_t row, int64_t width, DType t) {
  return static_cast<std::byte*>(p) + size_t(row * width) * dtype_size(t);
}
inline const void* at_row(const void* p, int64_t row, int64_t width, DType t) {
  return static_cast<const std::byte*>(p) + size_t(row * width) * dtype_size(t);
}

// y[n, out] = x[n, in] W^T (+ beta y), W = [out, in] (act dtype everywhere).
inline void linear(kernels::Ops& ops, void* y, const void* x, const TensorView& W, int64_t n,
                   float beta = 0.f) {
  kernels::GemmArgs g;
  g.trans_b = true;
  g.m = n, g.n = W.shape[0], g.k = W.shape[1];
  g.a = x, g.lda = W.shape[1];
  g.b = W.data, g.ldb = W.shape[1];
  g.beta = beta;
  g.c = y, g.ldc = W.shape[0];
  g.c_dtype = ops.act_dtype();
  ops.gemm(g);
}

// dx[n, in] = dy[n, out] W (+ beta dx).
inline void linear_dx(kernels::Ops& ops, void* dx, const void* dy, const TensorView& W, int64_t n,
                      float beta = 0.f) {
  kernels::GemmArgs g;
  g.m = n, g.n = W.shape[1], g.k = W.shape[0];
  g.a = dy, g.lda = W.shape[0];
  g.b = W.data, g.ldb = W.shape[1];
  g.beta = beta;
  g.c = dx, g.ldc = W.shape[1];
  g.c_dtype = ops.act_dtype();
  ops.gemm(g);
}

// dW_f32[out, in] += dy[n, out]^T x[n, in].
inline void linear_dw(kernels::Ops& ops, const TensorView& dW, const void* dy, const void* x,
                      int64_t n) {
  kernels::GemmArgs g;
  g.trans_a = true;
  g.m = dW.shape[0], g.n = dW.shape[1], g.k = n;
  g.a = dy, g.lda = dW.shape[0];
  g.b = x, g.ldb = dW.shape[1];
  g.beta = 1.f;
  g.c = dW.data, g.ldc = dW.shape[1];
  g.c_dtype = DType::F32;
  ops.gemm(g);
}

}  // namespace siesta::model::detail
