// A simple sampler over the training model's contiguous logits forward, for CPU runs and
// tests when the inference engine is not used: every generated token re-runs the whole
// prefix (no KV cache), so it is only for short toy sequences. Draws go through
// Ops::sample with per-row seeds, so rollouts are reproducible, and each token's log-prob is
// that of the unmodified (temperature 1) distribution, as the GRPO ratio needs.
#pragma once

#include <cstdint>
#include <vector>

#include "siesta/train/batch.hpp"
#include "siesta/train/trainer.hpp"

namespace siesta::train {

struct NaiveSamplingOptions {
  int samples_per_prompt = 1;   // n, the GRPO group size
  int max_new_tokens = 8;
  float temperature = 1.f;      // 0: greedy
  uint64_t seed = 0;            // with the prompt's index and the sample's index
};

// One Rollout per (prompt, sample), prompt-major (the n samples of a prompt are adjacent).
// Generation stops at eos (kept in completion_tokens) or after max_new_tokens. Rewards are
// left at 0 for the caller to fill.
std::vector<Rollout> naive_rollout(Trainer& trainer, const std::vector<std::vector<int32_t>>& prompts,
                                   const NaiveSamplingOptions& opts);

}  // namespace siesta::train
