// The RL and SFT objectives on the host, over per-token log-probabilities: group-relative
// advantages, the GRPO clipped-ratio loss with an optional k3 KL penalty, the SFT loss, and
// each loss's gradient with respect to the per-token log-probs (the model backprops that).
//
// Per-token arrays are [rows, cols] row-major; mask[r, c] is 1 for a token that is trained
// (a completion token) and 0 for prompt and padding.
#pragma once

#include <cstdint>
#include <vector>

namespace siesta::train {

struct AdvantageOptions {
  double eps = 1e-6;          // added to the std; with all-equal rewards gives 0, not NaN
  bool scale_by_std = true;   // false: Dr.GRPO-style, only subtract the group mean
  bool unbiased_std = true;   // Bessel's correction, as torch.std (verl) does
};

// rewards holds consecutive groups of group_size samples of the same prompt. Each advantage
// is (r - mean(group)) / (std(group) + eps). A group of one has advantage 0 (no peer to
// compare with). Throws TrainError when rewards.size() is not a multiple of group_size.
std::vector<float> group_advantages(const std::vector<double>& rewards, int group_size,
                                    const AdvantageOptions& opts = {});

// How per-token terms are averaged into one number.
enum class LossAggregation : uint8_t {
  TokenMean,         // sum over all trained tokens / number of trained tokens (DAPO, verl default)
  SeqMeanTokenMean,  // mean over sequences of each sequence's token mean (original GRPO)
};

// The denominators of the average. With gradient accumulation they are those of the whole
// batch, so that micro-batches add up to exactly the full-batch loss and gradient; zero
// means "count them in this input".
struct LossNorm {
  double tokens = 0;   // TokenMean: number of trained tokens in the batch
  double rows = 0;     // SeqMeanTokenMean: number of rows with at least one trained token
};

struct PolicyLossOptions {
  float clip_low = 0.2f;    // ratio is clipped to [1 - clip_low, 1 + clip_high]
  float clip_high = 0.2f;
  float kl_coef = 0.f;      // > 0 needs ref_logprob
  LossAggregation aggregation = LossAggregation::TokenMean;
};

struct PolicyLossInput {
  int64_t rows = 0, cols = 0;
  const float* logprob = nullptr;       // current policy, [rows, cols]
  const float* old_logprob = nullptr;   // rollout policy, [rows, cols]
  const float* ref_logprob = nullptr;   // frozen reference, [rows, cols]; may be null
  const float* advantage = nullptr;     // [rows]
  const float* mask = nullptr;          // [rows, cols]
};

struct LossStats {
  double loss = 0;           // the objective minimised (aggregated)
  double policy_loss = 0;    // clipped surrogate part (GRPO)
  double kl = 0;             // aggregated k3 estimate (GRPO, when a reference is given)
  double clip_fraction = 0;  // trained tokens whose gradient the clip zeroed
  double mean_ratio = 0;
  int64_t tokens = 0;        // trained tokens in this input
};

// GRPO per token: ratio = exp(lp - old), surrogate = -min(ratio * A, clip(ratio) * A),
// plus kl_coef * k3 with k3 = exp(ref - lp) - (ref - lp) - 1. When dlogprob is not null it
// receives d(loss)/d(lp) for every token (0 where mask is 0), overwriting it.
LossStats grpo_loss(const PolicyLossInput& in, const PolicyLossOptions& opts,
                    const LossNorm& norm, float* dlogprob);

// SFT: loss = -(aggregated) log-prob of the trained tokens; dlogprob as above.
LossStats sft_loss(int64_t rows, int64_t cols, const float* logprob, const float* mask,
                   LossAggregation aggregation, const LossNorm& norm, float* dlogprob);

// The denominators of a whole batch's mask.
LossNorm loss_norm_of(int64_t rows, int64_t cols, const float* mask);

}  // namespace siesta::train
