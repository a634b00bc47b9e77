// The order of phases in one colocated RL step, derived from the workflow's sleep level and
// wake order. The coordinator advances it as it drives the step; replay checks a trace against
// it. A phase out of order is a protocol violation.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace siesta::actors {

class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class WakeOrder { WeightsFirst, All };

struct StepPlan {
  int sleep_level = 2;                    // engine sleep level while training
  WakeOrder wake_order = WakeOrder::WeightsFirst;
  bool offload_trainer = true;            // trainer state off the device while the engine runs
  bool rollout = true;                    // GRPO steps roll out; SFT steps do not

  // rollout, sleep, restore, train, offload, wake_weights, sync, wake_kv (level 2, weights
  // first); level 1 (or wake order "all"): ..., wake_all, sync.
  std::vector<std::string> phases() const;
};

class StepProtocol {
 public:
  explicit StepProtocol(StepPlan plan) : plan_(plan), phases_(plan.phases()) {}
  // Checks that `phase` is the next one; throws ProtocolError naming expected and got.
  void advance(const std::string& phase);
  int completed_steps() const { return steps_; }
  const std::string& expected() const { return phases_[next_]; }
  const StepPlan& plan() const { return plan_; }

 private:
  StepPlan plan_;
  std::vector<std::string> phases_;
  size_t next_ = 0;
  int steps_ = 0;
};

}  // namespace siesta::actors
