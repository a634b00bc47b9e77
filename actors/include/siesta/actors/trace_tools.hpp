// Turning a trace into something to look at: Chrome trace-event JSON (Perfetto opens it: one
// track per actor, step phases as slices, device memory as a counter) and a per-phase summary.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "siesta/actors/trace.hpp"

namespace siesta::actors {

boost::json::object chrome_trace(const Trace& t);
void export_chrome(const std::filesystem::path& trace, const std::filesystem::path& out);

struct PhaseBreakdown {
  std::vector<std::string> phases;                    // in the order first seen
  std::map<int, std::map<std::string, double>> ms;    // step -> phase -> milliseconds
  std::map<int, double> step_ms;                      // step -> total
};
// Phase durations per step from the coordinator's phase events (rank 0): a phase lasts until
// the next phase starts; the step's last phase ends with the step's last message.
PhaseBreakdown phase_breakdown(const Trace& t);
std::string format_summary(const PhaseBreakdown& b);

}  // namespace siesta::actors
