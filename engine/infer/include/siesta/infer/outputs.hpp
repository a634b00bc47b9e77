// What the engine hands back: whole request outputs (generate) and streamed increments
// (add_request's callback), with vLLM's finish reasons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace siesta::infer {

using RequestId = uint64_t;

enum class FinishReason : uint8_t {
  None,    // still running
  Stop,    // eos, a stop token or a stop string
  Length,  // max_tokens or max_model_len reached
  Abort,   // abort(id), or sleep(level, abort) — stop_reason says which
};
// "stop", "length", "abort" (OpenAI's finish_reason spelling); "" for None.
const char* finish_reason_name(FinishReason r);

struct CompletionOutput {
  int index = 0;                    // sample index within the request, 0..n-1
  std::vector<int32_t> token_ids;   // generated ids (a stop token is kept; eos too)
  std::string text;                 // decoded, truncated before a matched stop string
  std::vector<float> logprobs;      // log-prob of each generated token when asked for
  FinishReason finish_reason = FinishReason::None;
  std::string stop_reason;          // matched stop string / stop token id / abort reason
};

struct RequestOutput {
  RequestId id = 0;
  std::vector<int32_t> prompt_token_ids;
  std::vector<CompletionOutput> outputs;   // n entries, ordered by index
  bool finished = false;
  // Timings, for the server's metrics (seconds since the request was added).
  double time_to_first_token_s = 0;
  double total_time_s = 0;
};

// One increment of one sample, delivered by add_request's callback after every engine step
// that changed the sample. Text is held back while it could still be the start of a stop
// string or ends inside a UTF-8 character, so streamed text never has to be retracted.
struct TokenDelta {
  RequestId request_id = 0;
  int index = 0;
  std::vector<int32_t> token_ids;   // ids generated in this step (usually one)
  std::vector<float> logprobs;      // their log-probs when asked for
  std::string text;                 // newly releasable text
  bool finished = false;            // last delta of this sample
  FinishReason finish_reason = FinishReason::None;
  std::string stop_reason;
  int num_prompt_tokens = 0;
  int num_generated_tokens = 0;     // so far, this sample
};

}  // namespace siesta::infer
