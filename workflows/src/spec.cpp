// Names of enum values as spelled in YAML, and small queries on a WorkflowSpec.
#include "siesta/workflows/spec.hpp"

#include <algorithm>

#include "siesta/model/presets.hpp"

namespace siesta::workflows {

const char* to_string(Device d) {
  switch (d) {
    case Device::Auto: return "auto";
    case Device::Cpu: return "cpu";
    case Device::Cuda: return "cuda";
  }
  return "?";
}

const char* to_string(Transport t) {
  switch (t) {
    case Transport::Auto: return "auto";
    case Transport::Nccl: return "nccl";
    case Transport::Host: return "host";
  }
  return "?";
}

const char* to_string(Launch l) {
  switch (l) {
    case Launch::InProcess: return "in_process";
    case Launch::Processes: return "processes";
    case Launch::External: return "external";
  }
  return "?";
}

const char* to_string(WakeOrder w) { return w == WakeOrder::WeightsFirst ? "weights_first" : "all"; }

const char* to_string(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::Bf16: return "bf16";
    case Precision::Fp32: return "fp32";
  }
  return "?";
}

const char* to_string(Optimizer) { return "adamw"; }

const char* to_string(TaskKind t) {
  switch (t) {
    case TaskKind::Addition: return "addition";
    case TaskKind::Reversal: return "reversal";
    case TaskKind::Sorting: return "sorting";
  }
  return "?";
}

const char* to_string(StageType t) {
  switch (t) {
    case StageType::Sft: return "sft";
    case StageType::Grpo: return "grpo";
    case StageType::Eval: return "eval";
  }
  return "?";
}

StageType stage_type(const StageSpec& s) { return static_cast<StageType>(s.index()); }

int stage_steps(const StageSpec& s) {
  return std::visit([](const auto& st) { return st.steps; }, s);
}

StageSpec default_stage(StageType t) {
  switch (t) {
    case StageType::Sft: return SftStage{};
    case StageType::Grpo: return GrpoStage{};
    case StageType::Eval: return EvalStage{};
  }
  return SftStage{};
}

std::vector<std::string> known_model_presets() { return model::preset_names(); }

bool model_is_path(const std::string& model) {
  return model.find('/') != std::string::npos || model.starts_with(".") || model.starts_with("~");
}

std::string resolved_run_dir(const WorkflowSpec& spec) {
  std::string dir = spec.outputs.run_dir;
  for (auto pos = dir.find("{name}"); pos != std::string::npos;
       pos = dir.find("{name}", pos + spec.name.size()))
    dir.replace(pos, 6, spec.name);
  return dir;
}

int total_steps(const WorkflowSpec& spec) {
  int n = 0;
  for (const auto& s : spec.stages) n += stage_steps(s);
  return n;
}

train::TaskSpec task_spec_of(const WorkflowSpec& s) {
  train::TaskSpec t;
  const auto& d = s.task.difficulty;
  switch (s.task.name) {
    case TaskKind::Addition:
      t.kind = train::TaskKind::Addition;
      t.min_len = d.min_digits;
      t.max_len = d.max_digits;
      break;
    case TaskKind::Reversal:
    case TaskKind::Sorting:
      t.kind = s.task.name == TaskKind::Reversal ? train::TaskKind::Reversal : train::TaskKind::Sorting;
      t.min_len = d.min_length;
      t.max_len = d.max_length;
      t.alphabet = d.alphabet;
      break;
  }
  t.seed = static_cast<uint64_t>(s.seeds.data);
  return t;
}

namespace {

int max_new_tokens_for(const WorkflowSpec& s, const train::Task& task) {
  int m = task.max_answer_chars() + 1;
  for (const auto& st : s.stages) {
    if (auto* g = std::get_if<GrpoStage>(&st)) m = std::max(m, g->max_new_tokens);
    if (auto* e = std::get_if<EvalStage>(&st)) m = std::max(m, e->max_new_tokens);
  }
  return m;
}

}  // namespace

int max_new_tokens_of(const WorkflowSpec& s) {
  return max_new_tokens_for(s, train::Task(task_spec_of(s)));
}

int longest_sequence_tokens(const WorkflowSpec& s) {
  train::Task task(task_spec_of(s));
  return 1 + task.max_prompt_chars() + max_new_tokens_for(s, task) + 1;
}

}  // namespace siesta::workflows
