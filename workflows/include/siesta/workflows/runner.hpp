// Runs a validated workflow: builds the workers (pool, engine, trainer and their actors) on the
// chosen device, in this process or, with devices.launch processes / external, rank 0 here and
// the other ranks in `siesta worker` processes (see worker.hpp); drives every stage through the
// coordinator, and writes the run folder:
//   workflow.yaml   the resolved workflow (what --resume reruns)
//   metrics.jsonl   one event per step / eval / checkpoint (flushed per line)
//   trace.jsonl     the message trace (outputs.trace), replayable with `siesta replay`
//   checkpoints/    the last checkpoint (trainer.ckpt) and state.json (steps it covers)
//   summary.txt, report.svg   at the end
#pragma once

#include <atomic>
#include <filesystem>
#include <string>

#include "siesta/workflows/spec.hpp"

namespace siesta::workflows {

struct RunOptions {
  // Continue the run in this folder from its last checkpoint (its own workflow.yaml is used).
  std::filesystem::path resume_dir;
  // Set (e.g. by SIGINT) to stop after the current step: a checkpoint is written first.
  const std::atomic<bool>* stop_requested = nullptr;
  // The siesta executable that devices.launch: processes starts workers with (`PROGRAM
  // worker`); empty = this process's own executable.
  std::string worker_program;
};

struct RunResult {
  std::filesystem::path run_dir;
  int exit_code = 0;          // 0 done; 1 failed (a lost worker too); 130 interrupted
  int64_t steps_done = 0;     // over the whole run, including steps before a resume
  double first_eval_reward = -1, last_eval_reward = -1;   // -1 = no eval ran
  std::string error;          // why it failed
};

RunResult run_workflow(const WorkflowSpec& spec, const RunOptions& options = {});

// --resume: the workflow saved in a run folder (throws WorkflowError naming what is missing).
WorkflowSpec workflow_of_run(const std::filesystem::path& run_dir);

}  // namespace siesta::workflows
