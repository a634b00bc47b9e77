// Causal grouped-query attention over contiguous sequences (training). Per (batch, head) the
// score matrix is formed with sgemm, masked, soft-maxed, and multiplied with V; the backward
// recomputes the probabilities from the saved log-sum-exp instead of storing them.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {
namespace {

struct Heads {
  int64_t q_stride, kv_stride;  // row strides of q/out and k/v, in floats
  int group;                    // query heads per kv head
};
Heads heads_of(const AttnShape& s) {
  return {int64_t(s.n_heads) * s.head_dim, int64_t(s.n_kv_heads) * s.head_dim,
          s.n_heads / s.n_kv_heads};
}

void check_shape(const AttnShape& s, const char* op) {
  if (s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.n_heads % s.n_kv_heads != 0)
    throw KernelError(std::string(op) + ": n_heads (" + std::to_string(s.n_heads) +
                      ") must be a positive multiple of n_kv_heads (" +
                      std::to_string(s.n_kv_heads) + "), head_dim (" +
                      std::to_string(s.head_dim) + ") positive");
}

// S = scale * Q K^T for one head: [seq, seq].
void scores(float* S, const float* Q, const float* K, int seq, int hd, const Heads& h,
            float scale) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, seq, seq, hd, scale, Q, blasint(h.q_stride),
              K, blasint(h.kv_stride), 0.f, S, seq);
}

}  // namespace

void CpuOps::attention_forward(void* out, float* lse_f32, const void* q, const void* k,
                               const void* v, int batch, int seq, const AttnShape& s) {
  check_shape(s, "attention_forward");
  const Heads h = heads_of(s);
  scratch_a_.resize(size_t(seq) * seq);
  float* S = scratch_a_.data();
  for (int b = 0; b < batch; ++b) {
    for (int head = 0; head < s.n_heads; ++head) {
      const int kvh = head / h.group;
      const float* Q = static_cast<const float*>(q) + int64_t(b) * seq * h.q_stride +
                       int64_t(head) * s.head_dim;
      const float* K = static_cast<const float*>(k) + int64_t(b) * seq * h.kv_stride +
                       int64_t(kvh) * s.head_dim;
      const float* V = static_cast<const float*>(v) + int64_t(b) * seq * h.kv_stride +
                       int64_t(kvh) * s.head_dim;
      float* O = static_cast<float*>(out) + int64_t(b) * seq * h.q_stride +
                 int64_t(head) * s.head_dim;
      float* lse = lse_f32 ? lse_f32 + (int64_t(b) * s.n_heads + head) * seq : nullptr;
      scores(S, Q, K, seq, s.head_dim, h, s.scale);
      for (int i = 0; i < seq; ++i) {
        float* row = S + int64_t(i) * seq;
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = 0; j <= i; ++j) mx = std::max(mx, row[j]);
        double sum = 0;
        for (int j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const float inv = float(1.0 / sum);
        for (int j = 0; j <= i; ++j) row[j] *= inv;
        for (int j = i + 1; j < seq; ++j) row[j] = 0.f;
        if (lse) lse[i] = mx + float(std::log(sum));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, seq, s.head_dim, seq, 1.f, S, seq, V,
                  blasint(h.kv_stride), 0.f, O, blasint(h.q_stride));
    }
  }
}

// With P = softmax(S), O = P V and D_i = sum_d dO_id O_id:
// dS = P * (dO V^T - D), dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO.
void CpuOps::attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q,
                                const void* k, const void* v, const void* out,
                                const float* lse_f32, int batch, int seq, const AttnShape& s) {
  check_shape(s, "attention_backward");
  const Heads h = heads_of(s);
  const int hd = s.head_dim;
  scratch_a_.resize(size_t(seq) * seq);
  scratch_b_.resize(size_t(seq) * seq);
  float* P = scratch_a_.data();
  float* dP = scratch_b_.data();
  const int64_t kv_elems = int64_t(batch) * seq * h.kv_stride;
  std::fill_n(static_cast<float*>(dk), kv_elems, 0.f);
  std::fill_n(static_cast<float*>(dv), kv_elems, 0.f);
  for (int b = 0; b < batch; ++b) {
    for (int head = 0; head < s.n_heads; ++head) {
      const int kvh = head / h.group;
      const int64_t qoff = int64_t(b) * seq * h.q_stride + int64_t(head) * hd;
      const int64_t kvoff = int64_t(b) * seq * h.kv_stride + int64_t(kvh) * hd;
      const float* Q = static_cast<const float*>(q) + qoff;
      const float* O = static_cast<const float*>(out) + qoff;
      const float* dO = static_cast<const float*>(dout) + qoff;
      float* dQ = static_cast<float*>(dq) + qoff;
      const float* K = static_cast<const float*>(k) + kvoff;
      const float* V = static_cast<const float*>(v) + kvoff;
      float* dK = static_cast<float*>(dk) + kvoff;
      float* dV = static_cast<float*>(dv) + kvoff;
      const float* lse = lse_f32 + (int64_t(b) * s.n_heads + head) * seq;

      scores(P, Q, K, seq, hd, h, s.scale);
      for (int i = 0; i < seq; ++i) {
        float* row = P + int64_t(i) * seq;
        for (int j = 0; j <= i; ++j) row[j] = std::exp(row[j] - lse[i]);
        for (int j = i + 1; j < seq; ++j) row[j] = 0.f;
      }
      // dP = dO V^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, seq, seq, hd, 1.f, dO,
                  blasint(h.q_stride), V, blasint(h.kv_stride), 0.f, dP, seq);
      for (int i = 0; i < seq; ++i) {
        double D = 0;
        for (int d = 0; d < hd; ++d) D += double(dO[i * h.q_stride + d]) * O[i * h.q_stride + d];
        float* prow = P + int64_t(i) * seq;
        float* dprow = dP + int64_t(i) * seq;
        for (int j = 0; j <= i; ++j) dprow[j] = prow[j] * (dprow[j] - float(D));
        for (int j = i + 1; j < seq; ++j) dprow[j] = 0.f;
      }
      // dV += P^T dO ; dQ = scale dS K ; dK += scale dS^T Q
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, seq, hd, seq, 1.f, P, seq, dO,
                  blasint(h.q_stride), 1.f, dV, blasint(h.kv_stride));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, seq, hd, seq, s.scale, dP, seq, K,
                  blasint(h.kv_stride), 0.f, dQ, blasint(h.q_stride));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, seq, hd, seq, s.scale, dP, seq, Q,
                  blasint(h.q_stride), 1.f, dK, blasint(h.kv_stride));
    }
  }
}

}  // namespace siesta::kernels::cpu
