// Per-request sampling controls, with vLLM's names and defaults, and their validation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace siesta::infer {

struct SamplingParams {
  int n = 1;                    // samples per prompt (a GRPO group); they share prompt blocks
  float temperature = 1.0f;     // 0 = greedy
  int top_k = 0;                // 0 (or -1, vLLM's spelling) = off
  float top_p = 1.0f;           // 1 = off
  std::optional<uint64_t> seed; // unset: the engine draws one from its own seeded generator
  int max_tokens = 16;          // new tokens per sample
  std::vector<std::string> stop;          // stop strings, matched on the decoded text
  std::vector<int32_t> stop_token_ids;    // stop tokens (kept in the token ids)
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  bool logprobs = false;        // report the log-prob of every sampled token

  // Throws InferError(InvalidArgument) naming the field, the value and the allowed range.
  // vocab_size > 0 also checks stop_token_ids.
  void validate(int vocab_size = 0) const;
};

}  // namespace siesta::infer
