// Training batches: padded [rows, cols] token ids with per-token masks and GRPO inputs, and
// builders for SFT (prompt, answer) pairs and GRPO rollouts.
//
// Every per-token array is aligned with the tokens: entry [r, t] concerns token t as predicted
// from tokens [0, t) of its row, so column 0 is never trained (its mask is 0).
#pragma once

#include <cstdint>
#include <vector>

#include "siesta/train/task.hpp"
#include "siesta/train/tokenizer.hpp"

namespace siesta::train {

enum class Objective : uint8_t { Sft, Grpo };

struct TrainBatch {
  Objective objective = Objective::Sft;
  int rows = 0, cols = 0;
  std::vector<int32_t> tokens;          // [rows, cols], padded with the pad id
  std::vector<float> mask;              // [rows, cols]: 1 for trained tokens (completions)
  std::vector<float> old_logprobs;      // GRPO: rollout log-prob of each token, [rows, cols]
  std::vector<float> ref_logprobs;      // GRPO with a KL penalty: reference log-probs; or empty
  std::vector<float> advantages;        // GRPO: [rows]

  int64_t trained_tokens() const;
  // Throws TrainError naming the inconsistency (sizes, mask on column 0, missing GRPO arrays).
  void validate(int32_t vocab_size) const;
};

// One sampled completion of a prompt, as the inference engine returns it.
struct Rollout {
  std::vector<int32_t> prompt_tokens;       // including bos
  std::vector<int32_t> completion_tokens;   // including eos when it stopped on it
  std::vector<float> completion_logprobs;   // sampling-policy log-prob of each completion token
  double reward = 0;
};

// bos + prompt + answer + eos per example; the answer and eos are trained.
TrainBatch make_sft_batch(const std::vector<TaskExample>& examples, const ByteTokenizer& tok);

// prompt + completion per rollout; completion tokens are trained with their rollout log-probs
// and the advantage of their row (advantages.size() == rollouts.size()).
TrainBatch make_grpo_batch(const std::vector<Rollout>& rollouts,
                           const std::vector<float>& advantages, const ByteTokenizer& tok);

}  // namespace siesta::train
