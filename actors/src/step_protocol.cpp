#include "siesta/actors/step_protocol.hpp"

namespace siesta::actors {

std::vector<std::string> StepPlan::phases() const {
  std::vector<std::string> p;
  if (rollout) p.push_back("rollout");
  p.push_back("sleep");
  if (offload_trainer) p.push_back("restore");
  p.push_back("train");
  if (offload_trainer) p.push_back("offload");
  if (sleep_level == 1) {
    // Level 1 keeps the engine's weights in its CPU backup and restores them: no sync. Used by
    // evaluation phases, where the trainer's weights do not change the engine's.
    p.push_back("wake_all");
  } else if (wake_order == WakeOrder::WeightsFirst) {
    p.push_back("wake_weights");
    p.push_back("sync");
    p.push_back("wake_kv");
  } else {
    p.push_back("wake_all");
    p.push_back("sync");
  }
  return p;
}

void StepProtocol::advance(const std::string& phase) {
  if (phase != phases_[next_]) {
    std::string all;
    for (auto& p : phases_) all += (all.empty() ? "" : " -> ") + p;
    throw ProtocolError("step " + std::to_string(steps_) + ": phase '" + phase +
                        "' out of order, expected '" + phases_[next_] + "' (order: " + all + ")");
  }
  if (++next_ == phases_.size()) {
    next_ = 0;
    ++steps_;
  }
}

}  // namespace siesta::actors
