// Inference attention over a paged KV cache (vLLM layout). kv_cache_write scatters the new
// tokens' K/V into their slots; paged_attention gathers each sequence's cached rows into a
// contiguous scratch and runs the same sgemm + masked softmax as the training path, each new
// token seeing positions <= its own.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::kv_cache_write(const PagedKv& cache, const void* k, const void* v, const PagedBatch& b,
                            const AttnShape& s) {
  const int64_t row = int64_t(s.n_kv_heads) * s.head_dim;
  const int64_t capacity = int64_t(cache.num_blocks) * cache.block_size;
  for (int i = 0; i < b.num_tokens; ++i) {
    const int64_t slot = b.slot_mapping[i];
    if (slot < 0) continue;  // padding token (vLLM convention): nothing to store
    if (slot >= capacity)
      throw KernelError("kv_cache_write: token " + std::to_string(i) + " maps to slot " +
                        std::to_string(slot) + ", the cache holds " + std::to_string(capacity) +
                        " slots (" + std::to_string(cache.num_blocks) + " blocks of " +
                        std::to_string(cache.block_size) + ")");
    std::memcpy(static_cast<float*>(cache.k) + slot * row, static_cast<const float*>(k) + i * row,
                size_t(row) * sizeof(float));
    std::memcpy(static_cast<float*>(cache.v) + slot * row, static_cast<const float*>(v) + i * row,
                size_t(row) * sizeof(float));
  }
}

// The op sequence itself: this backend's add_bias, rope and kv_cache_write, on q, k and v
// copied out of the packed rows.
void CpuOps::qkv_bias_rope_cache(void* q_out, const void* qkv, const void* q_bias,
                                 const void* k_bias, const void* v_bias, const float* cos_sin_f32,
                                 const PagedKv& cache, const PagedBatch& b, const AttnShape& s) {
  const int64_t n = b.num_tokens;
  if (n <= 0) return;
  const int64_t qd = int64_t(s.n_heads) * s.head_dim, kvd = int64_t(s.n_kv_heads) * s.head_dim;
  const int64_t row = qd + 2 * kvd;
  const auto* in = static_cast<const float*>(qkv);
  auto* q = static_cast<float*>(q_out);
  fused_k_.resize(size_t(n * kvd));
  fused_v_.resize(size_t(n * kvd));
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(q + t * qd, in + t * row, size_t(qd) * sizeof(float));
    std::memcpy(fused_k_.data() + t * kvd, in + t * row + qd, size_t(kvd) * sizeof(float));
    std::memcpy(fused_v_.data() + t * kvd, in + t * row + qd + kvd, size_t(kvd) * sizeof(float));
  }
  if (q_bias) add_bias(q, q_bias, n, qd);
  if (k_bias) add_bias(fused_k_.data(), k_bias, n, kvd);
  if (v_bias) add_bias(fused_v_.data(), v_bias, n, kvd);
  rope(q, b.positions, n, s.n_heads, s.head_dim, cos_sin_f32, false);
  rope(fused_k_.data(), b.positions, n, s.n_kv_heads, s.head_dim, cos_sin_f32, false);
  kv_cache_write(cache, fused_k_.data(), fused_v_.data(), b, s);
}

void CpuOps::paged_attention(void* out, const void* q, const PagedKv& cache, const PagedBatch& b,
                             const AttnShape& s) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const int64_t kv_row = int64_t(s.n_kv_heads) * hd;
  const int64_t q_row = int64_t(s.n_heads) * hd;
  for (int seq = 0; seq < b.num_seqs; ++seq) {
    const int q0 = b.q_start[seq], q_len = b.q_start[seq + 1] - q0;
    const int ctx = b.context_len[seq];
    if (q_len <= 0) continue;
    if (q_len > ctx)
      throw KernelError("paged_attention: sequence " + std::to_string(seq) + " has " +
                        std::to_string(q_len) + " new tokens but context_len " +
                        std::to_string(ctx) + " (must include the new tokens)");
    scratch_a_.resize(size_t(ctx) * kv_row);
    scratch_b_.resize(size_t(ctx) * kv_row);
    scratch_c_.resize(size_t(q_len) * ctx);
    float* Kc = scratch_a_.data();
    float* Vc = scratch_b_.data();
    float* S = scratch_c_.data();
    const int32_t* table = b.block_table + int64_t(seq) * b.max_blocks_per_seq;
    for (int p = 0; p < ctx; ++p) {
      const int64_t slot = int64_t(table[p / cache.block_size]) * cache.block_size +
                           p % cache.block_size;
      std::memcpy(Kc + p * kv_row, static_cast<const float*>(cache.k) + slot * kv_row,
                  size_t(kv_row) * sizeof(float));
      std::memcpy(Vc + p * kv_row, static_cast<const float*>(cache.v) + slot * kv_row,
                  size_t(kv_row) * sizeof(float));
    }
    for (int head = 0; head < s.n_heads; ++head) {
      const int kvh = head / group;
      const float* Q = static_cast<const float*>(q) + int64_t(q0) * q_row + int64_t(head) * hd;
      float* O = static_cast<float*>(out) + int64_t(q0) * q_row + int64_t(head) * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q_len, ctx, hd, s.scale, Q,
                  blasint(q_row), Kc + kvh * hd, blasint(kv_row), 0.f, S, ctx);
      for (int i = 0; i < q_len; ++i) {
        const int last = ctx - q_len + i;  // this token's position: it sees 0..last
        float* row = S + int64_t(i) * ctx;
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = 0; j <= last; ++j) mx = std::max(mx, row[j]);
        double sum = 0;
        for (int j = 0; j <= last; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const float inv = float(1.0 / sum);
        for (int j = 0; j <= last; ++j) row[j] *= inv;
        for (int j = last + 1; j < ctx; ++j) row[j] = 0.f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q_len, hd, ctx, 1.f, S, ctx,
                  Vc + kvh * hd, blasint(kv_row), 0.f, O, blasint(q_row));
    }
  }
}

}  // namespace siesta::kernels::cpu
