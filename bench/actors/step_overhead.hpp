// Orchestration overhead of real colocated RL steps: LocalWorker + Coordinator (siesta's own
// trainer), the tiny preset on the CPU or the small preset on a GPU, with the message trace on.
// Per step: wall time around Coordinator::grpo_step, minus the time the engine, trainer and
// syncer handlers spent working (each trace line's dur_ns). What remains is orchestration:
// message delivery and blocking waits, the memory manager's bookkeeping, the coordinator's own
// code (request building, reward scoring) and writing the trace lines themselves.
#pragma once

#include <string>

namespace siesta::bench {

struct StepOverhead {
  std::string device, preset;
  int steps = 0;
  double step_ms = 0;           // median wall time of one step
  double work_ms = 0;           // median engine + trainer + syncer handler time
  double memory_ms = 0;         // median memory-manager handler time (counted as overhead)
  double overhead_ms = 0;       // median wall - work
  double overhead_pct = 0;      // sum(wall - work) / sum(wall) * 100
  double messages = 0;          // requests per step (median): traced ones + a memory sample a phase
  std::string check = "ok";     // the trace holds each step's generate, train and sync
};

// gpu: the small preset on cuda:0 (needs a CUDA build and a GPU); otherwise tiny on the CPU.
StepOverhead measure_step_overhead(bool gpu, int warmup_steps, int steps);

}  // namespace siesta::bench
