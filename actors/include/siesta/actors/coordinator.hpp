// The coordinator drives RL steps through every worker's actors, phase by phase, following the
// StepPlan: it asks the memory manager before each wake/restore and releases after each
// sleep/offload, scores rollouts with the task, and records each phase start in the trace.
// It runs in a blocking context (a scoped_actor owned by the runner), because a step is a
// sequence: ~10 requests per step cost well under a millisecond against seconds of work.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "siesta/actors/protocol.hpp"
#include "siesta/actors/step_protocol.hpp"
#include "siesta/actors/tracing.hpp"
#include "siesta/train/task.hpp"

namespace siesta::actors {

class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RolloutOptions {
  int prompts_per_step = 8;
  int group_size = 8;
  float temperature = 1.f;
  float top_p = 1.f;
  int max_new_tokens = 8;
  uint64_t seed = 0;
};

// What one step did, for metrics, the progress display and the report.
struct StepRecord {
  int64_t step = 0;
  std::string stage;                         // "sft", "grpo"
  std::vector<std::pair<std::string, double>> phase_ms;  // in order
  struct PhaseMemory {
    uint64_t device_used = 0, engine_held = 0;   // rank 0, sampled at the end of the phase
  };
  std::vector<PhaseMemory> phase_memory;                 // parallel to phase_ms
  double step_ms = 0;
  double reward_mean = 0;                    // GRPO: mean rollout reward
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t generated_tokens = 0, trained_tokens = 0;
  uint64_t device_used_peak = 0;             // highest device memory sample in the step
  uint64_t engine_held_while_training = 0;   // engine bytes on the device during train
  double sync_gbps = 0;
};

struct EvalRecord {
  int64_t step = 0;
  double reward_mean = 0;
  double exact_match = 0;
  int prompts = 0;
  std::vector<std::pair<std::string, std::string>> samples;  // (prompt, completion), a few
};

class Coordinator {
 public:
  Coordinator(caf::scoped_actor& self, std::vector<WorkerHandles> workers, StepPlan plan,
              std::shared_ptr<Tracing> tracing, const train::Task& task,
              std::chrono::milliseconds timeout = std::chrono::minutes(30));

  // Reserves what the engines and trainers hold at start and offloads the trainers' state
  // when the plan says so. Call once before the first step.
  void start();
  // Applies a stage's trainer settings (learning rate schedule, group size, ...) on every rank.
  void begin_stage(const TrainStage& stage);
  // Loads a checkpoint into every trainer and syncs the engines; returns the optimizer steps.
  int64_t resume(const std::string& checkpoint_file);
  StepRecord grpo_step(int64_t step, const RolloutOptions& ro);
  StepRecord sft_step(int64_t step);
  EvalRecord evaluate(int64_t step, int prompts, int max_new_tokens);
  std::string checkpoint(const std::string& folder);   // rank 0's trainer
  MemorySnapshot memory(int rank = 0);
  // Called as each phase of a step starts (the progress display; tests that act mid-step).
  using PhaseObserver = std::function<void(int64_t step, const std::string& stage,
                                           const std::string& phase)>;
  void on_phase(PhaseObserver f) { on_phase_ = std::move(f); }

 private:
  caf::scoped_actor& self_;
  std::vector<WorkerHandles> workers_;
  StepPlan plan_;
  std::shared_ptr<Tracing> tracing_;
  const train::Task& task_;
  caf::duration timeout_;
  std::vector<uint64_t> trainer_state_bytes_;   // device bytes of each trainer's full state
  std::vector<uint64_t> kept_for_sync_;         // of which stay on the device until the sync
  std::vector<EngineStatus> engine_status_;
  int64_t sync_version_ = 0;
  PhaseObserver on_phase_;

  template <class R, class Handle, class... Ts>
  R ask(const Handle& h, const char* what, Ts&&... xs);
  template <class R, class Send>
  std::vector<R> gather(const char* what, Send send);
  template <class R, class Pick, class... Ts>
  std::vector<R> ask_all(Pick pick, const char* what, Ts... xs);
  void run_phases(int64_t step, const std::string& stage, StepRecord& rec, const StepPlan& plan,
                  const std::function<void()>& rollout, const std::function<void()>& train);
  void phase(int64_t step, const std::string& name, const StepPlan& plan, StepRecord& rec,
             const std::function<void()>& body);
  void reserve(int rank, const std::string& owner, const std::string& tag, uint64_t bytes);
  void release(int rank, const std::string& owner, const std::string& tag);
};

}  // namespace siesta::actors
