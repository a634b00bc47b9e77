// OpenAI JSON for completions: the whole response, streamed chunks, and errors. Text is made
// valid UTF-8 (invalid bytes become U+FFFD, as Python's errors="replace") because a byte-level
// model can emit any byte and JSON clients reject invalid UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "siesta/infer/outputs.hpp"
#include "siesta/infer/tokenizer.hpp"

namespace siesta::serve {

std::string to_valid_utf8(std::string_view s);

struct CompletionMeta {
  std::string id;       // "cmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
  int logprobs = -1;    // -1 = not asked
};

// One choice of the response: sample `s` of prompt p becomes index p * n + s (vLLM's order).
struct Choice {
  int index = 0;
  infer::CompletionOutput out;
};

std::string completion_body(const CompletionMeta& m, const std::vector<Choice>& choices,
                            const infer::Tokenizer& tok, uint64_t prompt_tokens);

// `data: {...}\n\n` with one choice increment; finish_reason empty = null.
std::string completion_chunk(const CompletionMeta& m, int index, const std::string& text,
                             const std::vector<int32_t>& token_ids,
                             const std::vector<float>& logprobs, infer::FinishReason finish,
                             const std::string& stop_reason, const infer::Tokenizer& tok);
std::string usage_chunk(const CompletionMeta& m, uint64_t prompt_tokens, uint64_t completion_tokens);

}  // namespace siesta::serve
