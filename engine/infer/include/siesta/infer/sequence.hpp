// A request and its sequences as the scheduler sees them. A request with n > 1 starts as one
// sequence; after its prompt is computed it forks into n that share the prompt's KV blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "siesta/infer/outputs.hpp"
#include "siesta/infer/sampling_params.hpp"

namespace siesta::infer {

struct Request;

enum class SeqStatus : uint8_t { Waiting, Running, Finished };

struct Sequence {
  int64_t id = 0;                 // unique in the engine; keys the block tables
  Request* request = nullptr;
  int index = 0;                  // sample index within the request
  std::vector<int32_t> tokens;    // prompt followed by generated tokens
  int prompt_len = 0;
  int num_computed = 0;           // leading tokens whose K/V are in the cache
  uint64_t seed = 0;              // sampling seed of this sample
  SeqStatus status = SeqStatus::Waiting;
  int num_preemptions = 0;

  // Output state.
  std::vector<float> logprobs;
  std::string text;               // decoded output (final once finished)
  size_t text_streamed = 0;       // bytes of text already delivered
  size_t tokens_streamed = 0;     // generated tokens already delivered
  FinishReason finish_reason = FinishReason::None;
  std::string stop_reason;

  int output_len() const { return int(tokens.size()) - prompt_len; }
  int num_new_tokens() const { return int(tokens.size()) - num_computed; }
  // Sequences that will run once this one is computed: n for a request not yet forked.
  int fanout() const;
  // FCFS order: earlier requests first, then by sample index.
  bool before(const Sequence& o) const;
};

using DeltaCallback = std::function<void(const TokenDelta&)>;

struct Request {
  RequestId id = 0;
  uint64_t arrival = 0;           // monotonically increasing admission counter
  std::vector<int32_t> prompt;
  SamplingParams params;
  DeltaCallback on_delta;         // may be empty
  bool forked = false;            // n sequences exist
  std::vector<std::unique_ptr<Sequence>> seqs;
  int num_finished = 0;
  std::chrono::steady_clock::time_point t_added;
  double ttft_s = -1;
  bool finished() const { return forked && num_finished == int(seqs.size()); }
};

}  // namespace siesta::infer
