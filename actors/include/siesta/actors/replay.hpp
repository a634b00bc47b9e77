// `siesta replay`: re-drives the engine lifecycle, the memory budget and the step protocol from a
// recorded trace, without a GPU, and reports the first message whose recorded reply differs from
// what the state machines answer now.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>

namespace siesta::actors {

struct ReplayOptions {
  std::optional<int64_t> until_seq;        // stop after this sequence number
  std::optional<std::string> break_on;     // stop at the first message of this type
  bool step = false;                       // interactive: show each message, wait for Enter
  std::ostream* out = nullptr;             // progress and the report (required)
  std::istream* in = nullptr;              // commands in step mode (Enter, c, q)
};

struct Divergence {
  int64_t seq = 0;
  std::string message;    // "coordinator -> engine/0 wake {"tags":["kv_cache"]}"
  std::string recorded;   // the reply or error in the trace
  std::string replayed;   // what the state machines answer
};

struct ReplayResult {
  int64_t replayed = 0;   // messages re-driven
  int64_t checked = 0;    // of which had a reply to compare
  int steps = 0;          // complete RL steps seen
  std::optional<Divergence> divergence;
  std::string stopped_because;   // "end of trace", "--until 12", "--break-on wake", "quit"
};

// Throws std::runtime_error for unreadable traces.
ReplayResult replay_trace(const std::filesystem::path& trace, const ReplayOptions& opts);

}  // namespace siesta::actors
