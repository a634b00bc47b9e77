// SamplingParams::validate: every message names the field, what was given and what is allowed.
#include "siesta/infer/sampling_params.hpp"

#include <cmath>
#include <sstream>

#include "siesta/infer/error.hpp"

namespace siesta::infer {

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidArgument: return "invalid_argument";
    case ErrorKind::Sleeping: return "sleeping";
    case ErrorKind::WeightsNotLoaded: return "weights_not_loaded";
    case ErrorKind::OutOfMemory: return "out_of_memory";
    case ErrorKind::NotFound: return "not_found";
    case ErrorKind::Internal: return "internal";
  }
  return "unknown";
}

namespace {

template <class T>
[[noreturn]] void bad(const char* field, T value, const char* allowed) {
  std::ostringstream os;
  os << "sampling parameter '" << field << "' = " << value << " is out of range (allowed: "
     << allowed << ")";
  throw InferError(ErrorKind::InvalidArgument, os.str());
}

}  // namespace

void SamplingParams::validate(int vocab_size) const {
  if (n < 1 || n > 1024) bad("n", n, "1 <= n <= 1024");
  if (!std::isfinite(temperature) || temperature < 0.f)
    bad("temperature", temperature, "a finite number >= 0 (0 = greedy)");
  if (top_k < -1) bad("top_k", top_k, "-1 or 0 (off), or >= 1");
  if (!(top_p > 0.f && top_p <= 1.f)) bad("top_p", top_p, "0 < top_p <= 1");
  if (max_tokens < 1) bad("max_tokens", max_tokens, ">= 1");
  for (const auto& s : stop)
    if (s.empty()) bad("stop", "\"\"", "non-empty strings");
  for (int32_t t : stop_token_ids)
    if (t < 0 || (vocab_size > 0 && t >= vocab_size)) {
      std::string allowed = vocab_size > 0 ? "0 <= id < vocab_size (" +
                                                 std::to_string(vocab_size) + ")"
                                           : std::string("ids >= 0");
      bad("stop_token_ids", t, allowed.c_str());
    }
}

}  // namespace siesta::infer
