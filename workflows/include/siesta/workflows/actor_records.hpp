// The coordinator's per-step and per-eval records as the run folder's records: what the runner
// hands to MetricsWriter, ProgressDisplay and RunReport. Kept apart from run_report.hpp so that
// the reports build without CAF; this header is part of siesta::workflows (the runner's library).
#pragma once

#include "siesta/actors/coordinator.hpp"
#include "siesta/workflows/run_report.hpp"

namespace siesta::workflows {

// Every field carried over; phase_memory becomes per-phase memory samples; the reward is set
// for grpo steps only (an sft step has no rollout); tokens_per_s counts generated and trained
// tokens over the step's wall time.
StepRecord step_record_from(const actors::StepRecord& r);
// The eval pass's figures; its samples stay with the caller (metrics "eval" event).
EvalPoint eval_point_from(const actors::EvalRecord& e);

}  // namespace siesta::workflows
