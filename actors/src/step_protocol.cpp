#include "siesta/actors/step_protocol.hpp"

namespace siesta::actors {

std::vector<std::string> StepPlan::phases() const {
  std::vector<std::string> p;
  if (rollout) p.push_back("rollout");
  p.push_back("sleep");
  if (offload_trainer) p.push_back("restore");
  p.push_back("train");
  if (offload_trainer) p.push_back("offload");
  if (wake_order == WakeOrder::WeightsFirst && sleep_level == 2) {
    // Level 2 discarded the weights: wake only them, fill them by the sync, and map the KV
    // cache last, so the sync never competes with the cache for memory.
    p.push_back("wake_weights");
    p.push_back("sync");
    p.push_back("wake_kv");
  } else {
    // Level 1 restores the engine's old weights from its CPU backup; the trainer changed them,
    // so the sync still runs (a level-1 step trades the sync's peak memory for a host copy).
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
