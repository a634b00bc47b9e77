// What a run measured per step, and the end-of-run summary built from it: a text table
// (per-phase time per step, peak memory, reward curves as sparklines) and an SVG report
// (reward curves, per-step phase timeline as stacked bars, device memory through each step).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace siesta::workflows {

struct PhaseTiming {
  std::string phase;  // rollout, sleep, train, wake_weights, sync, wake_kv, eval, ...
  double ms = 0;
};

struct MemorySample {
  std::string phase;          // the phase during (or at the end of) which it was taken
  uint64_t used_bytes = 0;    // device memory in use (cudaMemGetInfo; host RSS on cpu)
  uint64_t engine_bytes = 0;  // of which the engine held (its pools' mapped bytes)
};

// One training or eval step. The fields after `memory` mirror actors::StepRecord (see
// actor_records.hpp for the conversion); all of them are optional in the sense that 0 means
// "not measured", except engine_held_while_training, which counts when the step measured
// memory at all (0 bytes is what sleep level 2 should give).
struct StepRecord {
  int64_t step = 0;                  // counts from 1 over the whole run
  std::string stage;                 // sft, grpo, eval
  std::vector<PhaseTiming> phases;   // in the order they ran
  std::optional<double> reward;      // mean task reward (grpo samples; eval accuracy)
  std::optional<double> loss;
  double tokens_per_s = 0;
  std::vector<MemorySample> memory;  // per phase, in the order they ran (may be empty)

  double step_ms = 0;                // wall time of the step; 0 = the sum of the phases
  double grad_norm = 0;
  double lr = 0;
  int64_t generated_tokens = 0;      // rollout tokens produced by the engine
  int64_t trained_tokens = 0;        // tokens the trainer took a gradient over
  uint64_t device_used_peak = 0;     // highest device memory sample of the step
  uint64_t engine_held_while_training = 0;
  double sync_gbps = 0;              // weight broadcast bandwidth

  double total_ms() const;           // step_ms, or the sum of the phases
  uint64_t peak_used_bytes() const;  // max of device_used_peak and the samples
  bool measured_memory() const { return device_used_peak > 0 || !memory.empty(); }
  // The most the engine held while the trainer trained (the "train" samples and
  // engine_held_while_training); nullopt when the step did not train or measured nothing.
  std::optional<uint64_t> engine_bytes_during_train() const;
  // The form written as a "step" event to metrics.jsonl, and read back.
  boost::json::object to_json() const;
  static StepRecord from_json(const boost::json::object& o);  // throws WorkflowError
};

// One evaluation pass on held-out prompts (greedy unless the stage says otherwise).
struct EvalPoint {
  int64_t step = 0;                  // training steps done when it ran (0 = before training)
  double reward = 0;                 // mean task reward, partial credit included
  std::optional<double> exact_match; // fraction answered exactly
  int prompts = 0;
  // The form written as an "eval" event (plus whatever the caller adds), and read back.
  boost::json::object to_json() const;
  static EvalPoint from_json(const boost::json::object& o);  // throws WorkflowError
};

class RunReport {
 public:
  explicit RunReport(std::string title = "siesta run");

  void add(StepRecord r);
  void add_eval(EvalPoint e);
  const std::vector<StepRecord>& records() const { return records_; }
  // The eval passes added, and those of eval-stage step records, one per step (add_eval wins),
  // by step.
  std::vector<EvalPoint> evals() const;
  const std::string& title() const { return title_; }

  // From the "step" and "eval" events of a metrics file (after --resume, or for a finished
  // run); a step or eval recorded twice (a resumed run redoes the steps after its checkpoint)
  // keeps its last record.
  static RunReport from_metrics(const std::vector<boost::json::object>& events, std::string title);

  std::string summary_table() const;
  std::string svg() const;
  // Writes summary.txt and report.svg into run_dir; returns the SVG's path.
  std::filesystem::path write(const std::filesystem::path& run_dir) const;

 private:
  std::string title_;
  std::vector<StepRecord> records_;
  std::vector<EvalPoint> evals_;
};

// A compact ASCII sparkline ("_.:-=+*#", low to high) of at most `width` characters; longer
// series are averaged into buckets.
std::string sparkline(const std::vector<double>& values, size_t width = 48);

}  // namespace siesta::workflows
