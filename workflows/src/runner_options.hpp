// What the runner and a `siesta worker` process both derive from a workflow: the device of a
// rank and the options of its LocalWorker, so that every process builds its rank the same way.
#pragma once

#include "siesta/actors/local_worker.hpp"
#include "siesta/workflows/spec.hpp"

namespace siesta::workflows {

// The device of rank 0 (cuda:0 or cpu); throws WorkflowError for devices.device cuda without a
// visible GPU.
siesta::Device pick_device(const WorkflowSpec& s);

// The LocalWorker options of `rank` on `device` (the transport is left to the caller).
actors::WorkerOptions worker_options(const WorkflowSpec& s, siesta::Device device, int rank);

}  // namespace siesta::workflows
