// vLLM sleep-mode semantics as a pure state machine. The engine actor consults it before
// touching the engine, and `siesta replay` re-drives it from a trace without a GPU, so both
// agree by construction on what each sleep/wake/generate/update message must answer.
#pragma once

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace siesta::actors {

class LifecycleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LifecycleState {
  bool weights_awake = true;
  bool kv_awake = true;
  bool weights_valid = true;   // false after a level-2 sleep until new weights are loaded
  int sleep_level = 0;         // level of the last sleep while any tag sleeps, else 0
  bool is_sleeping() const { return !weights_awake || !kv_awake; }
  bool operator==(const LifecycleState&) const = default;
};

class EngineLifecycle {
 public:
  const LifecycleState& state() const { return s_; }

  // Throws LifecycleError (state unchanged) unless level is 1 or 2 and the engine is fully awake.
  void sleep(int level);
  // tags ⊆ {"weights", "kv_cache"}; empty means both. Waking an awake tag is an error.
  void wake(const std::vector<std::string>& tags);
  // Marks a wake as failed (e.g. out of memory): nothing changes, the engine stays asleep.
  // Loading weights requires the weights tag awake; makes them valid.
  void weights_loaded();
  // Throws LifecycleError naming the reason when the engine cannot generate now.
  void check_can_generate() const;

  static std::vector<std::string> normalize_tags(const std::vector<std::string>& tags);

 private:
  LifecycleState s_;
};

}  // namespace siesta::actors
