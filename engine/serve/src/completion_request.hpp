// The body of POST /v1/completions, parsed and checked. Every rejection is a 400 naming the
// field, what was found and what is allowed; unknown fields are rejected too, so a typo
// (e.g. "max_token") is not silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "siesta/infer/sampling_params.hpp"
#include "siesta/infer/tokenizer.hpp"

namespace siesta::serve {

struct CompletionRequest {
  std::string model;                            // empty = not given
  std::vector<std::vector<int32_t>> prompts;    // token ids, one entry per prompt
  infer::SamplingParams params;
  int logprobs = -1;                            // -1 = none
  bool stream = false;
  bool include_usage = false;                   // stream_options.include_usage
};

// Throws ApiError (400). vocab_size bounds token-id prompts and stop_token_ids.
CompletionRequest parse_completion_request(std::string_view body, const infer::Tokenizer& tok,
                                           int vocab_size);

}  // namespace siesta::serve
