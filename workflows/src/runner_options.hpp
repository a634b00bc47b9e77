// What the runner and a `siesta worker` process both derive from a workflow: the device of a
// rank, the options of its LocalWorker and the header of its message trace, so that every
// process builds and records its rank the same way.
#pragma once

#include <string>
#include <vector>

#include <boost/json.hpp>

#include "siesta/actors/local_worker.hpp"
#include "siesta/workflows/spec.hpp"

namespace siesta::workflows {

// The device of rank 0 (cuda:0 or cpu); throws WorkflowError for devices.device cuda without a
// visible GPU.
siesta::Device pick_device(const WorkflowSpec& s);

// The LocalWorker options of `rank` on `device` (the transport is left to the caller).
actors::WorkerOptions worker_options(const WorkflowSpec& s, siesta::Device device, int rank);

// Where a rank runs: the trace header's devices and the start event's ranks.
struct RankInfo {
  int rank = 0;
  std::string device, host;
  int pid = 0;
  uint64_t budget_bytes = 0, free_bytes = 0;
};
// A rank built in this process.
RankInfo local_rank_info(int rank, siesta::Device device, actors::LocalWorker& w);

// The header of a trace file recording these ranks (replay reads each rank's budget from it).
boost::json::object trace_header(const WorkflowSpec& spec, const std::vector<RankInfo>& ranks);

}  // namespace siesta::workflows
