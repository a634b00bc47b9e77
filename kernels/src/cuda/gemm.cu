// Matrix products through cuBLAS: bf16 A and B, fp32 accumulation, C in bf16 or fp32.
//
// The op table is row-major; cuBLAS is column-major. A row-major matrix with leading dimension
// ld is the column-major view of its transpose, so C = op(A)·op(B) (row-major) is computed as
// C^T = op(B)^T · op(A)^T (column-major): the operands swap, m and n swap, and each trans flag
// keeps its meaning.
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {

void CudaOps::gemm(const GemmArgs& g) {
  require(g.m >= 0 && g.n >= 0 && g.k >= 0, [&] {
    return "gemm: m, n, k must be >= 0 (got " + std::to_string(g.m) + ", " + std::to_string(g.n) +
           ", " + std::to_string(g.k) + ")";
  });
  if (g.m == 0 || g.n == 0) return;
  require(g.c_dtype == DType::F32 || g.c_dtype == DType::BF16, [&] {
    return "gemm: c_dtype must be F32 or BF16 (got " + std::string(dtype_name(g.c_dtype)) + ")";
  });
  // Row-major leading dimensions: at least the number of columns stored per row.
  const int64_t a_cols = g.trans_a ? g.m : g.k, b_cols = g.trans_b ? g.k : g.n;
  require(g.lda >= a_cols && g.ldb >= b_cols && g.ldc >= g.n, [&] {
    return "gemm: leading dimensions too small (lda " + std::to_string(g.lda) +
           " needs >= " + std::to_string(a_cols) + ", ldb " + std::to_string(g.ldb) +
           " needs >= " + std::to_string(b_cols) + ", ldc " + std::to_string(g.ldc) +
           " needs >= " + std::to_string(g.n) + ")";
  });
  if (g.k > 0 && gemv(g)) return;  // a few rows: the decode GEMV (decode_gemv.cu)
  activate();
  // k == 0 leaves C = beta * C, which cuBLAS does itself.
  const cudaDataType_t ct = g.c_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  SIESTA_CUBLAS_CHECK(cublasGemmEx(cublas_, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(g.n), int(g.m),
                                   int(g.k), &g.alpha, g.b, CUDA_R_16BF, int(g.ldb), g.a,
                                   CUDA_R_16BF, int(g.lda), &g.beta, g.c, ct, int(g.ldc),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace siesta::kernels::cuda
