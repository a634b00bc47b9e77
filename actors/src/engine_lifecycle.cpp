#include "siesta/actors/engine_lifecycle.hpp"

#include <algorithm>

namespace siesta::actors {

std::vector<std::string> EngineLifecycle::normalize_tags(const std::vector<std::string>& tags) {
  if (tags.empty()) return {"weights", "kv_cache"};
  std::vector<std::string> out;
  for (const auto& t : tags) {
    if (t != "weights" && t != "kv_cache")
      throw LifecycleError("unknown wake tag '" + t + "' (allowed: weights, kv_cache)");
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  }
  return out;
}

void EngineLifecycle::sleep(int level) {
  if (level != 1 && level != 2)
    throw LifecycleError("sleep level " + std::to_string(level) + " is not supported (allowed: 1, 2)");
  if (s_.is_sleeping())
    throw LifecycleError("engine is already sleeping (level " + std::to_string(s_.sleep_level) +
                         "); wake it before sleeping again");
  s_.weights_awake = false;
  s_.kv_awake = false;
  s_.sleep_level = level;
  if (level == 2) s_.weights_valid = false;
}

void EngineLifecycle::wake(const std::vector<std::string>& tags) {
  auto t = normalize_tags(tags);
  for (const auto& tag : t) {
    bool awake = tag == "weights" ? s_.weights_awake : s_.kv_awake;
    if (awake) throw LifecycleError("tag '" + tag + "' is already awake");
  }
  for (const auto& tag : t) (tag == "weights" ? s_.weights_awake : s_.kv_awake) = true;
  if (!s_.is_sleeping()) s_.sleep_level = 0;
}

void EngineLifecycle::weights_loaded() {
  if (!s_.weights_awake)
    throw LifecycleError("cannot load weights while the weights are asleep; wake_up(tags=[weights]) first");
  s_.weights_valid = true;
}

void EngineLifecycle::check_can_generate() const {
  if (s_.is_sleeping())
    throw LifecycleError(std::string("engine is sleeping (") +
                         (s_.weights_awake ? "" : "weights ") + (s_.kv_awake ? "" : "kv_cache ") +
                         "asleep); wake_up first");
  if (!s_.weights_valid)
    throw LifecycleError("weights were discarded by sleep(level=2) and no new weights were loaded "
                         "since; update or load weights before generating");
}

}  // namespace siesta::actors
