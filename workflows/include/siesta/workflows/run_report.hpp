// What a run measured per step, and the end-of-run summary built from it: a text table
// (per-phase time per step, peak memory, reward curve as a sparkline) and an SVG report
// (reward curve, per-step phase timeline as stacked bars, device memory line).
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

struct StepRecord {
  int64_t step = 0;                  // counts from 1 over the whole run
  std::string stage;                 // sft, grpo, eval
  std::vector<PhaseTiming> phases;   // in the order they ran
  std::optional<double> reward;      // mean task reward (grpo samples; eval accuracy)
  std::optional<double> loss;
  double tokens_per_s = 0;
  std::vector<MemorySample> memory;

  double total_ms() const;
  uint64_t peak_used_bytes() const;
  // The form written as a "step" event to metrics.jsonl, and read back.
  boost::json::object to_json() const;
  static StepRecord from_json(const boost::json::object& o);  // throws WorkflowError
};

class RunReport {
 public:
  explicit RunReport(std::string title = "siesta run");

  void add(StepRecord r);
  const std::vector<StepRecord>& records() const { return records_; }
  const std::string& title() const { return title_; }

  // From the "step" events of a metrics file (after --resume, or for a finished run).
  static RunReport from_metrics(const std::vector<boost::json::object>& events, std::string title);

  std::string summary_table() const;
  std::string svg() const;
  // Writes summary.txt and report.svg into run_dir; returns the SVG's path.
  std::filesystem::path write(const std::filesystem::path& run_dir) const;

 private:
  std::string title_;
  std::vector<StepRecord> records_;
};

// A compact ASCII sparkline ("_.:-=+*#", low to high) of at most `width` characters; longer
// series are averaged into buckets.
std::string sparkline(const std::vector<double>& values, size_t width = 48);

}  // namespace siesta::workflows
