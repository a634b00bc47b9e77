// Token sampling: greedy, temperature, top-k, top-p, with a counter-based uniform per
// (seed, step) so a request reproduces its tokens regardless of batching. The reported
// log-prob is under the unmodified distribution (temperature 1, no truncation), as vLLM does.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "cpu/cpu_ops.hpp"
#include "sample_slots.hpp"

namespace siesta::kernels::cpu {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double log_softmax_at(const float* z, int64_t vocab, int64_t at) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(z[j] - mx));
  return double(z[at] - mx) - std::log(sum);
}

}  // namespace

double uniform_for(uint64_t seed, uint64_t step) {
  const uint64_t r = splitmix64(splitmix64(seed) ^ step);
  return double(r >> 11) * 0x1.0p-53;
}

void sample_row(const float* z, int64_t vocab, const SamplingRow& row, int32_t* token,
                float* logprob) {
  int64_t chosen = 0;
  if (row.temperature <= 0.f) {
    chosen = std::max_element(z, z + vocab) - z;  // first maximum on ties
  } else {
    // Candidates in the order the truncation needs: by logit, descending, when top-k or top-p
    // apply (ties broken by index so the order is deterministic), in index order otherwise.
    const bool top_k = row.top_k > 0 && row.top_k < vocab;
    const bool top_p = row.top_p < 1.f;
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    std::iota(idx.begin(), idx.end(), 0);
    auto desc = [z](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
    int64_t keep = vocab;
    if (top_k) {
      keep = row.top_k;
      std::nth_element(idx.begin(), idx.begin() + keep - 1, idx.end(), desc);
      std::sort(idx.begin(), idx.begin() + keep, desc);
    } else if (top_p) {
      std::sort(idx.begin(), idx.end(), desc);
    }
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < keep; ++c) mx = std::max(mx, z[idx[size_t(c)]]);
    const double inv_t = 1.0 / double(row.temperature);
    std::vector<double> p(static_cast<size_t>(keep));
    double total = 0;
    for (int64_t c = 0; c < keep; ++c) {
      p[size_t(c)] = std::exp(double(z[idx[size_t(c)]] - mx) * inv_t);
      total += p[size_t(c)];
    }
    if (top_p) {
      // Keep the smallest prefix whose mass reaches top_p (at least one token).
      double cum = 0;
      int64_t cut = 0;
      while (cut < keep) {
        cum += p[size_t(cut)];
        ++cut;
        if (cum >= double(row.top_p) * total) break;
      }
      keep = cut;
      total = cum;
    }
    const double u = uniform_for(row.seed, row.step) * total;
    double cum = 0;
    chosen = idx[size_t(keep - 1)];
    for (int64_t c = 0; c < keep; ++c) {
      cum += p[size_t(c)];
      if (u < cum) {
        chosen = idx[size_t(c)];
        break;
      }
    }
  }
  *token = int32_t(chosen);
  if (logprob) *logprob = float(log_softmax_at(z, vocab, chosen));
}

CpuOps::SampleSlot& CpuOps::sample_slot(int slot, const char* op) {
  return sample_slot_at(sample_slots_, slot, op);
}

void CpuOps::sample_enqueue(int slot, const void* logits, int64_t n, int64_t vocab,
                            const SamplingRow* rows_host) {
  SampleSlot& s = sample_slot(slot, "sample_enqueue");
  s.tokens.assign(size_t(std::max<int64_t>(n, 0)), 0);
  s.logprobs.assign(s.tokens.size(), 0.f);
  const float* z = static_cast<const float*>(logits);
  for (int64_t i = 0; i < n; ++i)
    sample_row(z + i * vocab, vocab, rows_host[i], &s.tokens[size_t(i)], &s.logprobs[size_t(i)]);
  s.pending = !s.tokens.empty();
}

void CpuOps::sample_collect(int slot, int32_t* tokens_host, float* logprob_f32_host) {
  SampleSlot& s = sample_slot(slot, "sample_collect");
  if (s.tokens.empty()) return;
  if (!s.pending)
    throw KernelError("sample_collect: slot " + std::to_string(slot) +
                      " has nothing enqueued (sample_enqueue first; each draw is collected once)");
  s.pending = false;
  std::copy(s.tokens.begin(), s.tokens.end(), tokens_host);
  if (logprob_f32_host) std::copy(s.logprobs.begin(), s.logprobs.end(), logprob_f32_host);
}

void CpuOps::copy_sampled_tokens(int slot, int32_t* dst, int64_t n) {
  const SampleSlot& s = sample_slot(slot, "copy_sampled_tokens");
  if (n < 0 || size_t(n) > s.tokens.size())
    throw KernelError("copy_sampled_tokens: " + std::to_string(n) + " tokens, the slot holds " +
                      std::to_string(s.tokens.size()));
  std::copy(s.tokens.begin(), s.tokens.begin() + n, dst);
}

}  // namespace siesta::kernels::cpu
