// Training attention (contiguous batch, causal, grouped-query), built from cuBLAS batched
// matrix products plus row kernels, with the score matrices in an internal workspace:
//   forward : S = scale Q K^T (fp32) -> P = softmax(S) (bf16, lse kept) -> O = P V
//   backward: S recomputed -> P = exp(S - lse) -> dV += P^T dO -> dP = dO V^T
//             -> dS = scale P (dP - D), D_i = sum_d dO_i O_i -> dQ = dS K -> dK += dS^T Q
// Every product runs on the tensor cores through cuBLAS (bf16 operands, fp32 accumulation).
// The causal half of each score matrix is computed and then masked: simpler than a fused
// kernel, at twice the minimum matrix work and 6 S^2 bytes of workspace per head, so heads
// are processed in chunks of KV groups that fit kWorkspaceBudget. dK and dV sum over the
// query heads of a KV group in fp32 and are rounded to bf16 once.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"

namespace siesta::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBudget = size_t(512) << 20;  // score matrices of one chunk

// SIESTA_ATTENTION_WORKSPACE_BYTES overrides the budget (tests force many small chunks).
size_t workspace_budget() {
  if (const char* e = std::getenv("SIESTA_ATTENTION_WORKSPACE_BYTES")) {
    const long long v = std::atoll(e);
    if (v > 0) return size_t(v);
  }
  return kWorkspaceBudget;
}
constexpr int kRowThreads = 256;

// Where the matrix of batch entry e lives. Entries enumerate (kv group, query head in group).
enum class MatKind : int { QHead, KvHead, Score };
struct MatRef {
  const void* base;
  MatKind kind;
  int elem_bytes;
};
struct Geometry {
  int S, H, Hk, g, hd;
};

__device__ __forceinline__ const char* mat_ptr(const MatRef& r, const Geometry& geo, int b, int h,
                                               int hk, int64_t local) {
  const char* p = static_cast<const char*>(r.base);
  switch (r.kind) {
    case MatKind::QHead: return p + ((int64_t(b) * geo.S * geo.H + h) * geo.hd) * r.elem_bytes;
    case MatKind::KvHead: return p + ((int64_t(b) * geo.S * geo.Hk + hk) * geo.hd) * r.elem_bytes;
    default: return p + local * geo.S * geo.S * r.elem_bytes;
  }
}

// Fills cuBLAS pointer arrays for entries of groups [grp0, grp0 + groups). With j_fixed < 0
// every query head of each group is an entry (count = groups * g); otherwise only head j_fixed
// of each group (count = groups), so that no two entries write the same KV-head gradient.
__global__ void build_pointers(const void** pa, const void** pb, void** pc, MatRef a, MatRef b,
                               MatRef c, Geometry geo, int grp0, int count, int j_fixed) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= count) return;
  const int grp = j_fixed < 0 ? grp0 + e / geo.g : grp0 + e;
  const int j = j_fixed < 0 ? e % geo.g : j_fixed;
  const int bb = grp / geo.Hk, hk = grp % geo.Hk, h = hk * geo.g + j;
  const int64_t local = int64_t(grp - grp0) * geo.g + j;
  pa[e] = mat_ptr(a, geo, bb, h, hk, local);
  pb[e] = mat_ptr(b, geo, bb, h, hk, local);
  pc[e] = const_cast<char*>(mat_ptr(c, geo, bb, h, hk, local));
}

// Row r of the chunk's score matrices -> (batch, head, query index) for the lse layout.
__device__ __forceinline__ int64_t lse_index(const Geometry& geo, int grp0, int64_t r) {
  const int64_t local = r / geo.S;
  const int i = int(r % geo.S);
  const int grp = grp0 + int(local / geo.g), j = int(local % geo.g);
  const int b = grp / geo.Hk, h = (grp % geo.Hk) * geo.g + j;
  return (int64_t(b) * geo.H + h) * geo.S + i;
}

// Causal softmax of one (already scaled) score row: P[j] = exp(S[j] - lse) for j <= i, 0 after.
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows(bf16* __restrict__ P, float* __restrict__ lse_out, const float* __restrict__ Sc,
                 Geometry geo, int grp0) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const int i = int(r % geo.S);
  const float* srow = Sc + r * geo.S;
  bf16* prow = P + r * geo.S;
  float m = -INFINITY, s = 0.f;
  for (int j = threadIdx.x; j <= i; j += blockDim.x) {
    const float x = srow[j];
    if (x > m) {
      s *= __expf(m - x);
      m = x;
    }
    s += __expf(x - m);
  }
  const float M = block_max(m, red);
  const float sum = block_sum(s > 0.f ? s * __expf(m - M) : 0.f, red);
  const float lse = M + logf(sum);
  if (threadIdx.x == 0) lse_out[lse_index(geo, grp0, r)] = lse;
  for (int j = threadIdx.x; j < geo.S; j += blockDim.x)
    prow[j] = to_bf(j <= i ? __expf(srow[j] - lse) : 0.f);
}

// Backward: P recomputed from the scores and the forward's lse.
__global__ void __launch_bounds__(kRowThreads)
    probs_from_lse(bf16* __restrict__ P, const float* __restrict__ lse_in,
                   const float* __restrict__ Sc, Geometry geo, int grp0) {
  const int64_t r = blockIdx.x;
  const int i = int(r % geo.S);
  const float lse = lse_in[lse_index(geo, grp0, r)];
  const float* srow = Sc + r * geo.S;
  bf16* prow = P + r * geo.S;
  for (int j = threadIdx.x; j < geo.S; j += blockDim.x)
    prow[j] = to_bf(j <= i ? __expf(srow[j] - lse) : 0.f);
}

// dS = scale * P * (dP - D_i), in place over P (entries after i stay 0).
__global__ void __launch_bounds__(kRowThreads)
    dscores(bf16* __restrict__ P, const float* __restrict__ dP, const float* __restrict__ D,
            Geometry geo, int grp0, float scale) {
  const int64_t r = blockIdx.x;
  const int i = int(r % geo.S);
  const float di = D[lse_index(geo, grp0, r)];
  const float* drow = dP + r * geo.S;
  bf16* prow = P + r * geo.S;
  for (int j = threadIdx.x; j <= i; j += blockDim.x)
    prow[j] = to_bf(scale * to_f(prow[j]) * (drow[j] - di));
}

// D[b, h, i] = sum_d dO[b, i, h, d] * O[b, i, h, d]; one warp per (b, i, h) row.
__global__ void rowdot_kernel(float* __restrict__ D, const bf16* __restrict__ dO,
                              const bf16* __restrict__ O, int64_t rows, Geometry geo) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const bf16* a = dO + row * geo.hd;
  const bf16* o = O + row * geo.hd;
  float s = 0.f;
  for (int d = lane; d < geo.hd; d += 32) s += to_f(a[d]) * to_f(o[d]);
  s = warp_sum(s);
  if (lane == 0) {
    // row enumerates (b, i, h) in memory order
    const int h = int(row % geo.H);
    const int64_t bi = row / geo.H;
    const int i = int(bi % geo.S);
    const int64_t b = bi / geo.S;
    D[(b * geo.H + h) * geo.S + i] = s;
  }
}

// Row-major batched product C_e = alpha op(A_e) op(B_e) + beta C_e through column-major cuBLAS
// (operands swapped, see gemm.cu).
void batched_gemm(cublasHandle_t h, bool ta, bool tb, int m, int n, int k, float alpha,
                  const void* const* A, int lda, const void* const* B, int ldb, float beta,
                  void* const* C, cudaDataType_t ct, int ldc, int count) {
  SIESTA_CUBLAS_CHECK(cublasGemmBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B,
                                          CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, ct, ldc,
                                          count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

struct Plan {
  Geometry geo;
  int groups = 0;        // batch * n_kv_heads
  int chunk_groups = 0;  // groups per chunk
  size_t score_bytes = 0, probs_bytes = 0;
};

Plan make_plan(int batch, int seq, const AttnShape& s, const char* op) {
  require(batch > 0 && seq > 0, [&] { return std::string(op) + ": batch and seq must be > 0"; });
  require(s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0, [&] {
    return std::string(op) + ": n_heads (" + std::to_string(s.n_heads) +
           ") must be a positive multiple of n_kv_heads (" + std::to_string(s.n_kv_heads) + ")";
  });
  require(s.head_dim > 0, [&] { return std::string(op) + ": head_dim must be > 0"; });
  Plan p;
  p.geo = {seq, s.n_heads, s.n_kv_heads, s.n_heads / s.n_kv_heads, s.head_dim};
  p.groups = batch * s.n_kv_heads;
  const size_t per_group = size_t(p.geo.g) * size_t(seq) * size_t(seq) * (4 + 2);
  p.chunk_groups = int(std::clamp<size_t>(workspace_budget() / per_group, 1, size_t(p.groups)));
  const size_t heads = size_t(p.chunk_groups) * p.geo.g;
  p.score_bytes = heads * seq * seq * 4;
  p.probs_bytes = heads * seq * seq * 2;
  return p;
}

size_t round256(size_t b) { return (b + 255) / 256 * 256; }

// Carves the attention scratch: scores, probabilities, three pointer arrays, then `extra`.
struct Carved {
  float* scores;
  bf16* probs;
  const void** pa;
  const void** pb;
  void** pc;
  char* extra;
};
Carved carve(Scratch& scratch, const Plan& p, size_t extra_bytes, cudaStream_t st) {
  const size_t heads = size_t(p.chunk_groups) * p.geo.g;
  const size_t ptr_bytes = round256(heads * sizeof(void*));
  const size_t total = round256(p.score_bytes) + round256(p.probs_bytes) + 3 * ptr_bytes +
                       round256(extra_bytes);
  char* base = static_cast<char*>(scratch.get(total, st));
  Carved c;
  c.scores = reinterpret_cast<float*>(base);
  base += round256(p.score_bytes);
  c.probs = reinterpret_cast<bf16*>(base);
  base += round256(p.probs_bytes);
  c.pa = reinterpret_cast<const void**>(base);
  c.pb = reinterpret_cast<const void**>(base + ptr_bytes);
  c.pc = reinterpret_cast<void**>(base + 2 * ptr_bytes);
  c.extra = base + 3 * ptr_bytes;
  return c;
}

// One batched product over a chunk: pointer arrays built on the stream, then cuBLAS.
struct ChunkGemm {
  cublasHandle_t handle;
  cudaStream_t stream;
  const Carved& c;
  const Geometry& geo;
  void operator()(int grp0, int groups, int j_fixed, MatRef a, MatRef b, MatRef out, bool ta,
                  bool tb, int m, int n, int k, float alpha, int lda, int ldb, float beta,
                  cudaDataType_t ct, int ldc) const {
    const int count = j_fixed < 0 ? groups * geo.g : groups;
    build_pointers<<<grid_for(count, 128), 128, 0, stream>>>(c.pa, c.pb, c.pc, a, b, out, geo,
                                                              grp0, count, j_fixed);
    SIESTA_CUDA_LAUNCH_CHECK();
    batched_gemm(handle, ta, tb, m, n, k, alpha, c.pa, lda, c.pb, ldb, beta, c.pc, ct, ldc, count);
  }
};

}  // namespace

void CudaOps::attention_forward(void* out, float* lse_f32, const void* q, const void* k,
                                const void* v, int batch, int seq, const AttnShape& s) {
  const Plan p = make_plan(batch, seq, s, "attention_forward");
  activate();
  const Carved c = carve(attn_scratch_, p, 0, stream_);
  const Geometry& geo = p.geo;
  const int S = seq, hd = geo.hd, ldq = geo.H * hd, ldk = geo.Hk * hd;
  const ChunkGemm run{cublas_, stream_, c, geo};
  const MatRef Q{q, MatKind::QHead, 2}, K{k, MatKind::KvHead, 2}, V{v, MatKind::KvHead, 2};
  const MatRef O{out, MatKind::QHead, 2};
  const MatRef S32{c.scores, MatKind::Score, 4}, P16{c.probs, MatKind::Score, 2};
  for (int grp0 = 0; grp0 < p.groups; grp0 += p.chunk_groups) {
    const int groups = std::min(p.chunk_groups, p.groups - grp0);
    const int64_t rows = int64_t(groups) * geo.g * S;
    run(grp0, groups, -1, Q, K, S32, false, true, S, S, hd, s.scale, ldq, ldk, 0.f, CUDA_R_32F, S);
    softmax_rows<<<unsigned(rows), kRowThreads, 0, stream_>>>(c.probs, lse_f32, c.scores, geo,
                                                              grp0);
    SIESTA_CUDA_LAUNCH_CHECK();
    run(grp0, groups, -1, P16, V, O, false, false, S, hd, S, 1.f, S, ldk, 0.f, CUDA_R_16BF, ldq);
  }
}

void CudaOps::attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q,
                                 const void* k, const void* v, const void* out,
                                 const float* lse_f32, int batch, int seq, const AttnShape& s) {
  const Plan p = make_plan(batch, seq, s, "attention_backward");
  activate();
  const Geometry& geo = p.geo;
  const int S = seq, hd = geo.hd, ldq = geo.H * hd, ldk = geo.Hk * hd;
  const size_t kv_elems = size_t(batch) * S * ldk;
  const size_t d_bytes = round256(size_t(batch) * geo.H * S * sizeof(float));
  const size_t kv32_bytes = round256(kv_elems * sizeof(float));
  const Carved c = carve(attn_scratch_, p, d_bytes + 2 * kv32_bytes, stream_);
  float* D = reinterpret_cast<float*>(c.extra);
  float* dk32 = reinterpret_cast<float*>(c.extra + d_bytes);
  float* dv32 = reinterpret_cast<float*>(c.extra + d_bytes + kv32_bytes);
  SIESTA_CUDA_CHECK(cudaMemsetAsync(dk32, 0, 2 * kv32_bytes, stream_));  // dk32 and dv32

  const int64_t qrows = int64_t(batch) * S * geo.H;
  rowdot_kernel<<<grid_for(qrows, 8, int64_t(1) << 31), 256, 0, stream_>>>(
      D, static_cast<const bf16*>(dout), static_cast<const bf16*>(out), qrows, geo);
  SIESTA_CUDA_LAUNCH_CHECK();

  const ChunkGemm run{cublas_, stream_, c, geo};
  const MatRef Q{q, MatKind::QHead, 2}, K{k, MatKind::KvHead, 2}, V{v, MatKind::KvHead, 2};
  const MatRef dO{dout, MatKind::QHead, 2}, dQ{dq, MatKind::QHead, 2};
  const MatRef dK32{dk32, MatKind::KvHead, 4}, dV32{dv32, MatKind::KvHead, 4};
  const MatRef S32{c.scores, MatKind::Score, 4}, P16{c.probs, MatKind::Score, 2};
  for (int grp0 = 0; grp0 < p.groups; grp0 += p.chunk_groups) {
    const int groups = std::min(p.chunk_groups, p.groups - grp0);
    const unsigned rows = unsigned(int64_t(groups) * geo.g * S);
    run(grp0, groups, -1, Q, K, S32, false, true, S, S, hd, s.scale, ldq, ldk, 0.f, CUDA_R_32F, S);
    probs_from_lse<<<rows, kRowThreads, 0, stream_>>>(c.probs, lse_f32, c.scores, geo, grp0);
    SIESTA_CUDA_LAUNCH_CHECK();
    for (int j = 0; j < geo.g; ++j)  // dV += P^T dO, one query head per KV group at a time
      run(grp0, groups, j, P16, dO, dV32, true, false, S, hd, S, 1.f, S, ldq, 1.f, CUDA_R_32F,
          ldk);
    run(grp0, groups, -1, dO, V, S32, false, true, S, S, hd, 1.f, ldq, ldk, 0.f, CUDA_R_32F, S);
    dscores<<<rows, kRowThreads, 0, stream_>>>(c.probs, c.scores, D, geo, grp0, s.scale);
    SIESTA_CUDA_LAUNCH_CHECK();
    run(grp0, groups, -1, P16, K, dQ, false, false, S, hd, S, 1.f, S, ldk, 0.f, CUDA_R_16BF, ldq);
    for (int j = 0; j < geo.g; ++j)  // dK += dS^T Q
      run(grp0, groups, j, P16, Q, dK32, true, false, S, hd, S, 1.f, S, ldq, 1.f, CUDA_R_32F, ldk);
  }
  convert(dk, DType::BF16, dk32, DType::F32, int64_t(kv_elems));
  convert(dv, DType::BF16, dv32, DType::F32, int64_t(kv_elems));
}

}  // namespace siesta::kernels::cuda
