// Log-probabilities of given tokens and entropy per row (the GRPO/SFT head), and the backward.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {
namespace {

// log-sum-exp of a row, in double so that vocabularies of 150k entries do not lose precision.
double row_lse(const float* z, int64_t vocab, float* max_out) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(z[j] - mx));
  *max_out = mx;
  return double(mx) + std::log(sum);
}

void check_target(int32_t t, int64_t row, int64_t vocab, const char* op) {
  if (t < 0 || t >= vocab)
    throw KernelError(std::string(op) + ": target " + std::to_string(t) + " at row " +
                      std::to_string(row) + " is outside the vocabulary [0, " +
                      std::to_string(vocab) + ")");
}

}  // namespace

void CpuOps::token_logprobs(float* logprob_f32, float* entropy_f32, const void* logits,
                            const int32_t* targets, int64_t n, int64_t vocab) {
  const float* z = static_cast<const float*>(logits);
  for (int64_t i = 0; i < n; ++i) {
    const float* zi = z + i * vocab;
    check_target(targets[i], i, vocab, "token_logprobs");
    float mx;
    const double lse = row_lse(zi, vocab, &mx);
    logprob_f32[i] = float(double(zi[targets[i]]) - lse);
    if (entropy_f32) {
      // H = lse - sum p z
      double pz = 0;
      for (int64_t j = 0; j < vocab; ++j) pz += std::exp(double(zi[j]) - lse) * zi[j];
      entropy_f32[i] = float(lse - pz);
    }
  }
}

void CpuOps::token_logprobs_backward(void* dlogits, const void* logits, const int32_t* targets,
                                     const float* dlogprob_f32, int64_t n, int64_t vocab) {
  const float* z = static_cast<const float*>(logits);
  float* dz = static_cast<float*>(dlogits);
  for (int64_t i = 0; i < n; ++i) {
    const float* zi = z + i * vocab;
    check_target(targets[i], i, vocab, "token_logprobs_backward");
    float mx;
    const double lse = row_lse(zi, vocab, &mx);
    const double g = dlogprob_f32[i];
    const int32_t t = targets[i];
    // Written element by element after lse is known, so dlogits may alias logits.
    for (int64_t j = 0; j < vocab; ++j) {
      const double p = std::exp(double(zi[j]) - lse);
      dz[i * vocab + j] = float(g * ((j == t ? 1.0 : 0.0) - p));
    }
  }
}

}  // namespace siesta::kernels::cpu
