// The typed form of a workflow YAML file. Every field has a default here; the allowed values,
// the YAML key names and the documentation live in one place, src/schema.cpp, which the parser,
// to_yaml() and the README reference are all generated from.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "siesta/train/task.hpp"

namespace siesta::workflows {

enum class Device { Auto, Cpu, Cuda };
enum class Transport { Auto, Nccl, Host };
enum class Launch { InProcess, Processes, External };
enum class WakeOrder { WeightsFirst, All };
enum class Precision { Auto, Bf16, Fp32 };
enum class Optimizer { AdamW };
enum class TaskKind { Addition, Reversal, Sorting };
enum class StageType { Sft, Grpo, Eval };

struct DevicesSpec {
  Device device = Device::Auto;       // auto: cuda when a GPU is visible, else cpu
  Transport transport = Transport::Auto;  // auto: nccl on cuda, host on cpu
  int gpus = 1;                        // GPUs per node (device cuda)
  int workers_per_node = 1;            // worker processes per node; one per GPU on cuda
  int nodes = 1;
  // in_process: every rank in the `siesta run` process; processes: `siesta run` starts a
  // `siesta worker` process per rank of its node; external: ranks 1.. are started elsewhere.
  Launch launch = Launch::InProcess;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

struct SleepLevels {
  int train = 2;  // engine sleep level while the trainer trains (rollout -> train)
  int eval = 1;   // engine sleep level after an eval pass, before training resumes
};

struct EngineSpec {
  int max_batch = 64;
  int block_size = 16;
  int max_model_len = 256;
  // At most one of these two is set; neither means "room for max_batch sequences of
  // max_model_len tokens".
  std::optional<uint64_t> kv_cache_bytes;
  std::optional<double> gpu_memory_utilization;
  SleepLevels sleep_level;
  WakeOrder wake_order = WakeOrder::WeightsFirst;
  bool cuda_graphs = true;  // ignored on cpu
  bool async_scheduling = true;
};

struct TrainerSpec {
  Optimizer optimizer = Optimizer::AdamW;
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.95};
  double weight_decay = 0.0;
  double eps = 1e-8;
  int warmup_steps = 5;
  double grad_clip = 1.0;  // 0 = off
  int micro_batch = 32;    // sequences per forward/backward pass
  int grad_accum = 1;      // steps whose gradients are summed before one optimizer update
  Precision precision = Precision::Auto;  // auto: bf16 on cuda, fp32 on cpu
  bool offload_state = false;             // trainer state to pinned host memory during rollout
};

struct SftStage {
  int steps = 40;
  int examples_per_step = 32;
  std::optional<double> lr;  // null = trainer.lr
};

struct GrpoStage {
  int steps = 60;
  std::optional<double> lr;  // null = trainer.lr
  int group_size = 8;  // samples per prompt (n)
  int prompts_per_step = 8;
  double clip_eps = 0.2;
  double kl_coef = 0.0;
  double temperature = 1.0;
  double top_p = 1.0;
  int max_new_tokens = 8;
};

struct EvalStage {
  int steps = 1;  // evaluation passes over task.eval_prompts
  double temperature = 0.0;  // 0 = greedy
  int max_new_tokens = 8;
};

using StageSpec = std::variant<SftStage, GrpoStage, EvalStage>;

StageType stage_type(const StageSpec& s);
int stage_steps(const StageSpec& s);
StageSpec default_stage(StageType t);

struct Difficulty {
  int min_digits = 1;  // addition: digits per operand
  int max_digits = 2;
  int min_length = 2;  // reversal / sorting: characters of the input string
  int max_length = 6;
  std::string alphabet;  // reversal / sorting: characters to draw from; "" = the task's own
};

struct TaskSpec {
  TaskKind name = TaskKind::Addition;
  Difficulty difficulty;
  int eval_prompts = 64;
};

struct ScheduleSpec {
  int eval_every = 20;        // training steps between eval passes; 0 = only eval stages
  int checkpoint_every = 20;  // 0 = only at the end
  int log_every = 1;
};

struct OutputsSpec {
  std::string run_dir = "runs/{name}";  // {name} is replaced by the run name
  bool trace = true;
  bool metrics = true;
  bool report = true;
};

struct SeedsSpec {
  int64_t global = 1234;
  int64_t data = 42;
};

struct WorkflowSpec {
  int version = 1;
  std::string name = "siesta-run";
  std::string model = "mini";  // a preset name, or a folder (contains '/') with config.json
  DevicesSpec devices;
  EngineSpec engine;
  TrainerSpec trainer;
  std::vector<StageSpec> stages{SftStage{}, GrpoStage{}, EvalStage{}};  // YAML: algorithm.stages
  TaskSpec task;
  ScheduleSpec schedule;
  OutputsSpec outputs;
  SeedsSpec seeds;
};

// Spellings used in YAML (and in to_yaml / the README).
const char* to_string(Device);
const char* to_string(Transport);
const char* to_string(Launch);
const char* to_string(WakeOrder);
const char* to_string(Precision);
const char* to_string(Optimizer);
const char* to_string(TaskKind);
const char* to_string(StageType);

// Model presets the engine generates locally (configs/models/*.json, found as engine/model
// finds them); anything with a '/' (or starting with '.' or '~') is a folder instead.
std::vector<std::string> known_model_presets();
bool model_is_path(const std::string& model);

// outputs.run_dir with {name} replaced.
std::string resolved_run_dir(const WorkflowSpec& spec);
// Sum of stage_steps over the stages (what a progress bar counts to).
int total_steps(const WorkflowSpec& spec);

// The trainer's task of this workflow (task.name, its difficulty, seeds.data).
train::TaskSpec task_spec_of(const WorkflowSpec& spec);
// Longest completion any stage asks for: the task's longest answer + eos, or a stage's
// max_new_tokens when larger.
int max_new_tokens_of(const WorkflowSpec& spec);
// Tokens of the longest sequence the run produces (bos, prompt, completion, eos); the engine's
// max_model_len and the trainer's sequence length must hold it. Throws train::TrainError when
// the task settings are invalid (validation reports that first).
int longest_sequence_tokens(const WorkflowSpec& spec);

}  // namespace siesta::workflows
