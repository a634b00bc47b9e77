// actors::StepRecord / EvalRecord -> the run folder's records.
#include "siesta/workflows/actor_records.hpp"

namespace siesta::workflows {

StepRecord step_record_from(const actors::StepRecord& r) {
  StepRecord o;
  o.step = r.step;
  o.stage = r.stage;
  for (size_t i = 0; i < r.phase_ms.size(); ++i) {
    o.phases.push_back({r.phase_ms[i].first, r.phase_ms[i].second});
    if (i < r.phase_memory.size())
      o.memory.push_back({r.phase_ms[i].first, r.phase_memory[i].device_used,
                          r.phase_memory[i].engine_held});
  }
  if (r.stage == "grpo") o.reward = r.reward_mean;
  o.loss = r.loss;
  o.step_ms = r.step_ms;
  if (r.step_ms > 0)
    o.tokens_per_s = static_cast<double>(r.generated_tokens + r.trained_tokens) / (r.step_ms / 1e3);
  o.grad_norm = r.grad_norm;
  o.lr = r.lr;
  o.generated_tokens = r.generated_tokens;
  o.trained_tokens = r.trained_tokens;
  o.device_used_peak = r.device_used_peak;
  o.engine_held_while_training = r.engine_held_while_training;
  o.sync_gbps = r.sync_gbps;
  return o;
}

EvalPoint eval_point_from(const actors::EvalRecord& e) {
  return EvalPoint{e.step, e.reward_mean, e.exact_match, e.prompts};
}

}  // namespace siesta::workflows
