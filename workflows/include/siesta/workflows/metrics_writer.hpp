// metrics.jsonl in the run folder: one JSON object per event, each line flushed as written so
// that a killed run keeps every completed step and `tail -f` shows progress.
#pragma once

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "siesta/workflows/run_report.hpp"

namespace siesta::workflows {

class MetricsWriter {
 public:
  // Appends (a resumed run continues the same file); creates parent folders.
  // Throws WorkflowError when the file cannot be opened.
  explicit MetricsWriter(const std::filesystem::path& file);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Writes {"event": event, "time": <unix seconds>, ...fields}; "event" and "time" in
  // `fields` win. Thread-safe: actors may report from several threads.
  void write(std::string_view event, const boost::json::object& fields = {});
  // {"event": "step", ...r.to_json()} and {"event": "eval", ...e.to_json(), ...extra} (extra:
  // e.g. "samples"): the events RunReport::from_metrics reads back.
  void write_step(const StepRecord& r) { write("step", r.to_json()); }
  void write_eval(const EvalPoint& e, const boost::json::object& extra = {});
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  std::mutex mu_;
};

// Every line of a metrics file parsed (a torn last line from a killed run is skipped).
std::vector<boost::json::object> read_metrics(const std::filesystem::path& file);

}  // namespace siesta::workflows
