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

// The step measured: a preset and the length of its rollouts. The orchestration cost per step is
// about fixed (some 26 requests), so its share depends on how much work a step holds: the short
// answers of the sorting task make a toy step; reasoning-length rollouts make a real one.
struct StepShape {
  std::string preset = "tiny";
  int prompts = 8, group = 8, max_new_tokens = 5;
  uint64_t kv_cache_bytes = 4ull << 20;
  int micro_batch_rows = 64;
};
StepShape cpu_step();            // tiny, sorting answers (5 tokens)
StepShape gpu_short_step();      // small, sorting answers (9 tokens), 256 rollouts
StepShape gpu_long_step();       // 0.5b, 256-token rollouts, 256 of them

// On cuda:0 when gpu (needs a CUDA build and a GPU), otherwise on the CPU.
StepOverhead measure_step_overhead(bool gpu, const StepShape& shape, int warmup_steps, int steps);

}  // namespace siesta::bench
