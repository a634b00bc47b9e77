// Host implementation of the GRPO / SFT objectives and their gradients w.r.t. log-probs.
#include "siesta/train/loss.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "siesta/train/error.hpp"

namespace siesta::train {
namespace {

// Weight of token (r, c) in the aggregated loss, given the row's trained-token count.
double token_weight(LossAggregation agg, const LossNorm& norm, double row_tokens) {
  if (agg == LossAggregation::TokenMean) return norm.tokens > 0 ? 1.0 / norm.tokens : 0.0;
  return norm.rows > 0 && row_tokens > 0 ? 1.0 / (norm.rows * row_tokens) : 0.0;
}

LossNorm fill_norm(LossNorm norm, int64_t rows, int64_t cols, const float* mask) {
  LossNorm own = loss_norm_of(rows, cols, mask);
  if (norm.tokens <= 0) norm.tokens = own.tokens;
  if (norm.rows <= 0) norm.rows = own.rows;
  return norm;
}

double row_count(const float* mask_row, int64_t cols) {
  double n = 0;
  for (int64_t c = 0; c < cols; ++c) n += mask_row[c] != 0.f;
  return n;
}

}  // namespace

std::vector<float> group_advantages(const std::vector<double>& rewards, int group_size,
                                    const AdvantageOptions& opts) {
  if (group_size < 1 || rewards.size() % size_t(group_size) != 0)
    throw TrainError("group_advantages: " + std::to_string(rewards.size()) +
                     " rewards do not split into groups of " + std::to_string(group_size) +
                     " (allowed: group_size >= 1 dividing the number of rewards)");
  std::vector<float> adv(rewards.size(), 0.f);
  if (group_size == 1) return adv;
  for (size_t g = 0; g < rewards.size(); g += size_t(group_size)) {
    double mean = 0;
    for (int i = 0; i < group_size; ++i) mean += rewards[g + i];
    mean /= group_size;
    double var = 0;
    for (int i = 0; i < group_size; ++i) var += (rewards[g + i] - mean) * (rewards[g + i] - mean);
    var /= opts.unbiased_std ? group_size - 1 : group_size;
    const double denom = opts.scale_by_std ? std::sqrt(var) + opts.eps : 1.0;
    // The mean of equal rewards can differ from them by a rounding residue; a group without
    // spread carries no signal and must give exactly 0.
    const auto [lo, hi] =
        std::minmax_element(rewards.begin() + g, rewards.begin() + g + group_size);
    if (*lo == *hi) continue;
    for (int i = 0; i < group_size; ++i) adv[g + i] = float((rewards[g + i] - mean) / denom);
  }
  return adv;
}

LossNorm loss_norm_of(int64_t rows, int64_t cols, const float* mask) {
  LossNorm n;
  for (int64_t r = 0; r < rows; ++r) {
    double t = row_count(mask + r * cols, cols);
    n.tokens += t;
    n.rows += t > 0;
  }
  return n;
}

LossStats grpo_loss(const PolicyLossInput& in, const PolicyLossOptions& o, const LossNorm& norm_in,
                    float* dlogprob) {
  if (o.kl_coef > 0 && !in.ref_logprob)
    throw TrainError("grpo_loss: kl_coef " + std::to_string(o.kl_coef) +
                     " > 0 needs reference log-probs (got none)");
  if (!(o.clip_low >= 0 && o.clip_low < 1 && o.clip_high >= 0))
    throw TrainError("grpo_loss: clip range [1 - " + std::to_string(o.clip_low) + ", 1 + " +
                     std::to_string(o.clip_high) + "] is invalid (allowed: 0 <= clip_low < 1, "
                     "clip_high >= 0)");
  const LossNorm norm = fill_norm(norm_in, in.rows, in.cols, in.mask);
  LossStats s;
  double clipped = 0, ratio_sum = 0;
  const double lo = 1.0 - o.clip_low, hi = 1.0 + o.clip_high;
  for (int64_t r = 0; r < in.rows; ++r) {
    const float* m = in.mask + r * in.cols;
    const double w = token_weight(o.aggregation, norm, row_count(m, in.cols));
    const double a = in.advantage[r];
    for (int64_t c = 0; c < in.cols; ++c) {
      const int64_t i = r * in.cols + c;
      if (m[c] == 0.f) {
        if (dlogprob) dlogprob[i] = 0.f;
        continue;
      }
      const double lp = in.logprob[i];
      const double ratio = std::exp(lp - double(in.old_logprob[i]));
      const double unclipped = ratio * a;
      const double clip_term = std::clamp(ratio, lo, hi) * a;
      // min(unclipped, clipped): the gradient flows only through the unclipped branch, and
      // only when that branch is the smaller one (ties keep the gradient, as torch.min does).
      const bool through = unclipped <= clip_term;
      const double surrogate = -std::min(unclipped, clip_term);
      double grad = through ? -a * ratio : 0.0;
      double k3 = 0;
      if (in.ref_logprob) {
        const double d = double(in.ref_logprob[i]) - lp;
        k3 = std::exp(d) - d - 1.0;
        grad += o.kl_coef * (1.0 - std::exp(d));
      }
      s.policy_loss += w * surrogate;
      s.kl += w * k3;
      clipped += !through;
      ratio_sum += ratio;
      ++s.tokens;
      if (dlogprob) dlogprob[i] = float(w * grad);
    }
  }
  s.loss = s.policy_loss + o.kl_coef * s.kl;
  s.clip_fraction = s.tokens ? clipped / double(s.tokens) : 0;
  s.mean_ratio = s.tokens ? ratio_sum / double(s.tokens) : 0;
  return s;
}

LossStats sft_loss(int64_t rows, int64_t cols, const float* logprob, const float* mask,
                   LossAggregation agg, const LossNorm& norm_in, float* dlogprob) {
  const LossNorm norm = fill_norm(norm_in, rows, cols, mask);
  LossStats s;
  for (int64_t r = 0; r < rows; ++r) {
    const float* m = mask + r * cols;
    const double w = token_weight(agg, norm, row_count(m, cols));
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      if (m[c] == 0.f) {
        if (dlogprob) dlogprob[i] = 0.f;
        continue;
      }
      s.loss -= w * double(logprob[i]);
      ++s.tokens;
      if (dlogprob) dlogprob[i] = float(-w);
    }
  }
  s.policy_loss = s.loss;
  s.mean_ratio = 1;
  return s;
}

}  // namespace siesta::train
