// The workflow schema: every key, its allowed values and its documentation, in YAML order.
// Defaults come from the initializers in spec.hpp.
#include "schema.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "scalars.hpp"

namespace siesta::workflows::detail {

// ---- rules -----------------------------------------------------------------------------------

std::string IntRule::allowed() const {
  if (!one_of.empty()) {
    std::string s;
    for (auto v : one_of) s += (s.empty() ? "" : ", ") + std::to_string(v);
    return s;
  }
  return std::to_string(min) + ".." + std::to_string(max);
}

bool IntRule::accepts(int64_t v) const {
  if (!one_of.empty()) return std::find(one_of.begin(), one_of.end(), v) != one_of.end();
  return v >= min && v <= max;
}

std::string RealRule::allowed() const {
  return std::string(min_open ? "(" : "[") + format_real(min) + ", " + format_real(max) +
         (max_open ? ")" : "]");
}

bool RealRule::accepts(double v) const {
  return (min_open ? v > min : v >= min) && (max_open ? v < max : v <= max);
}

std::string BytesRule::allowed() const {
  return format_bytes(min) + ".." + format_bytes(max) + ", e.g. 512MiB, 2GiB";
}

std::string ChoiceRule::allowed() const {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// ---- value checks for text fields ----------------------------------------------------------------

static std::string check_name(const std::string& v) {
  if (v.empty() || v.size() > 64) return "must be 1 to 64 characters long";
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return "'" + v + "' contains '" + std::string(1, c) + "'; it names folders";
  return "";
}

static std::string check_model(const std::string& v) {
  if (v.empty()) return "is empty";
  if (model_is_path(v)) {
    if (v.starts_with("~")) return "'~' is not expanded in a workflow file; write the full path";
    std::filesystem::path p(v);
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec) && p.extension() == ".json") return "";
    if (!std::filesystem::is_directory(p, ec)) return "folder '" + v + "' does not exist";
    if (!std::filesystem::exists(p / "config.json", ec))
      return "folder '" + v + "' has no config.json";
    return "";
  }
  const auto presets = known_model_presets();
  if (std::find(presets.begin(), presets.end(), v) == presets.end()) {
    std::string msg = "'" + v + "' is neither a known preset nor a folder path (folders contain '/')";
    if (presets.empty()) msg += "; no presets were found (set SIESTA_CONFIGS to the configs folder)";
    return msg;
  }
  return "";
}

static std::string check_alphabet(const std::string& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c < 33 || c > 126) return "contains a character that is not printable ASCII";
    if (c == '=' || c == '(' || c == ')')
      return "contains '" + std::string(1, c) + "', which the task's prompts use as markers";
    if (v.find(c, i + 1) != std::string::npos)
      return "'" + std::string(1, c) + "' appears twice";
  }
  return "";
}

static std::string check_nonempty(const std::string& v) { return v.empty() ? "is empty" : ""; }

static std::string presets_text() {
  std::string s;
  for (const auto& p : known_model_presets()) s += p + ", ";
  return s + "or a folder with config.json (e.g. ./models/my-model), or a config .json file";
}

// ---- the schema --------------------------------------------------------------------------------

const ChoiceRule& stage_type_rule() {
  static const ChoiceRule r{{"sft", "grpo", "eval"}};
  return r;
}

static const IntRule kSteps{1, 1000000};
static const IntRule kTokens{1, 65536};

static void describe(SchemaVisitor& v, SftStage& s) {
  integer(v, "steps", s.steps, kSteps, "optimizer steps of supervised training on task answers");
  integer(v, "examples_per_step", s.examples_per_step, {1, 65536},
          "examples (prompt + correct answer) per step");
  v.optional_real("lr", s.lr, {0, 1, true, false}, "learning rate of this stage; null = trainer.lr");
}

static void describe(SchemaVisitor& v, GrpoStage& s) {
  integer(v, "steps", s.steps, kSteps, "RL steps (rollout, train, weight sync)");
  v.optional_real("lr", s.lr, {0, 1, true, false}, "learning rate of this stage; null = trainer.lr");
  integer(v, "group_size", s.group_size,
          {2, 1024, {}, "GRPO needs at least 2 samples per prompt for a group-relative advantage"},
          "samples per prompt (n)");
  integer(v, "prompts_per_step", s.prompts_per_step, {1, 4096}, "prompts per RL step");
  v.real("clip_eps", s.clip_eps, {0, 1, true, false, ""}, "PPO-style ratio clip epsilon");
  v.real("kl_coef", s.kl_coef, {0, 10, false, false, ""},
         "weight of the KL penalty to the stage's starting policy; 0 = off");
  v.real("temperature", s.temperature,
         {0, 10, true, false,
          "at temperature 0 every sample of a group is the same and carries no advantage"},
         "rollout sampling temperature");
  v.real("top_p", s.top_p, {0, 1, true, false, ""}, "rollout nucleus sampling threshold");
  integer(v, "max_new_tokens", s.max_new_tokens, kTokens, "rollout completion length limit");
}

static void describe(SchemaVisitor& v, EvalStage& s) {
  integer(v, "steps", s.steps, {1, 1000}, "evaluation passes over task.eval_prompts");
  v.real("temperature", s.temperature, {0, 10, false, false, ""}, "0 = greedy decoding");
  integer(v, "max_new_tokens", s.max_new_tokens, kTokens, "completion length limit");
}

void describe_stage_fields(SchemaVisitor& v, StageSpec& s) {
  std::visit([&](auto& st) { describe(v, st); }, s);
}

void describe_workflow(SchemaVisitor& v, WorkflowSpec& s) {
  integer(v, "version", s.version, {1, 1, {1}, ""}, "schema version of this file");
  v.text("name", s.name, {"letters, digits, '-', '_', '.'; 1-64 characters", check_name},
         "run name; names the run folder and the trace");
  v.text("model", s.model, {presets_text(), check_model}, "model preset or HF-style folder");

  v.section("devices", "where the workers run", [&] {
    choice(v, "device", s.devices.device, {{"auto", "cpu", "cuda"}},
           "auto picks cuda when a GPU is visible, else cpu");
    choice(v, "transport", s.devices.transport, {{"auto", "nccl", "host"}},
           "weight transport; auto = nccl on cuda, host on cpu");
    integer(v, "gpus", s.devices.gpus, {1, 64}, "GPUs per node (device cuda)");
    integer(v, "workers_per_node", s.devices.workers_per_node, {1, 64},
            "worker processes per node; on cuda one per GPU");
    integer(v, "nodes", s.devices.nodes, {1, 1024}, "nodes (torchrun-style launch)");
    choice(v, "launch", s.devices.launch, {{"in_process", "processes", "external"}},
           "in_process: every rank in this process; processes: `siesta run` starts a "
           "`siesta worker` per rank of its node; external: ranks 1.. are `siesta worker`s "
           "started elsewhere (torchrun, Slurm)");
    v.text("master_addr", s.devices.master_addr, {"a host name or IP address", check_nonempty},
           "coordinator address (MASTER_ADDR overrides)");
    integer(v, "master_port", s.devices.master_port, {0, 65535},
            "coordinator port (MASTER_PORT overrides); 0 = a free one, when every worker is "
            "started by `siesta run`");
  });

  v.section("engine", "the inference engine", [&] {
    integer(v, "max_batch", s.engine.max_batch, {1, 4096}, "sequences decoded together");
    integer(v, "block_size", s.engine.block_size, {1, 256, {8, 16, 32, 64, 128}, ""},
            "tokens per paged KV-cache block");
    integer(v, "max_model_len", s.engine.max_model_len, {16, 131072},
            "longest prompt + completion in tokens");
    v.optional_bytes("kv_cache_bytes", s.engine.kv_cache_bytes, {1ull << 20, 1ull << 40},
                     "KV cache size; null = max_batch x max_model_len tokens");
    v.optional_real("gpu_memory_utilization", s.engine.gpu_memory_utilization,
                    {0, 1, true, false, ""},
                    "KV cache as a fraction of GPU memory (instead of kv_cache_bytes)");
    v.section("sleep_level", "engine sleep level per phase", [&] {
      integer(v, "train", s.engine.sleep_level.train, {1, 2, {1, 2}, ""},
              "while the trainer trains: 1 = weights to CPU, 2 = discard");
      integer(v, "eval", s.engine.sleep_level.eval, {1, 2, {1, 2}, ""},
              "after an eval pass, before training resumes");
    });
    choice(v, "wake_order", s.engine.wake_order, {{"weights_first", "all"}},
           "weights_first wakes weights, syncs, then the KV cache");
    v.boolean("cuda_graphs", s.engine.cuda_graphs, "capture decode steps as CUDA graphs (cuda)");
    v.boolean("async_scheduling", s.engine.async_scheduling,
              "queue each decode step before the previous one's tokens reach the host");
  });

  v.section("trainer", "the trainer", [&] {
    choice(v, "optimizer", s.trainer.optimizer, {{"adamw"}}, "optimizer");
    v.real("lr", s.trainer.lr, {0, 1, true, false, ""}, "peak learning rate");
    v.real_pair("betas", s.trainer.betas, {0, 1, false, true, ""}, "AdamW beta1, beta2");
    v.real("weight_decay", s.trainer.weight_decay, {0, 1, false, false, ""},
           "AdamW decoupled weight decay");
    v.real("eps", s.trainer.eps, {0, 1e-3, true, false, ""}, "AdamW epsilon");
    integer(v, "warmup_steps", s.trainer.warmup_steps, {0, 1000000}, "linear lr warm-up steps");
    v.real("grad_clip", s.trainer.grad_clip, {0, 1e6, false, false, ""},
           "global gradient norm clip; 0 = off");
    integer(v, "micro_batch", s.trainer.micro_batch, {1, 4096},
            "sequences per forward/backward pass");
    integer(v, "grad_accum", s.trainer.grad_accum, {1, 1024},
            "steps whose gradients are summed per optimizer update");
    choice(v, "precision", s.trainer.precision, {{"auto", "bf16", "fp32"}},
           "auto = bf16 compute + fp32 master on cuda, fp32 on cpu");
    v.boolean("offload_state", s.trainer.offload_state,
              "move trainer state to pinned host memory during rollout (cuda)");
  });

  v.section("algorithm", "what the run does, in order", [&] {
    v.stages("stages", s.stages, "stages run in order; each has a type");
  });

  v.section("task", "the verifiable task that computes rewards", [&] {
    choice(v, "name", s.task.name, {{"addition", "reversal", "sorting"}}, "task");
    v.section("difficulty", "problem size", [&] {
      integer(v, "min_digits", s.task.difficulty.min_digits, {1, 18}, "addition: fewest digits per operand");
      integer(v, "max_digits", s.task.difficulty.max_digits, {1, 18}, "addition: most digits per operand");
      integer(v, "min_length", s.task.difficulty.min_length, {1, 64}, "reversal, sorting: shortest input");
      integer(v, "max_length", s.task.difficulty.max_length, {1, 64}, "reversal, sorting: longest input");
      v.text("alphabet", s.task.difficulty.alphabet,
             {"distinct printable characters other than = ( ); empty = abcdefgh (reversal), 0123456789 (sorting)",
              check_alphabet},
             "reversal, sorting: characters to draw from");
    });
    integer(v, "eval_prompts", s.task.eval_prompts, {1, 100000}, "held-out prompts per eval pass");
  });

  v.section("schedule", "cadence, in training steps", [&] {
    integer(v, "eval_every", s.schedule.eval_every, {0, 1000000}, "eval pass every N steps; 0 = off");
    integer(v, "checkpoint_every", s.schedule.checkpoint_every, {0, 1000000},
            "checkpoint every N steps; 0 = only at the end");
    integer(v, "log_every", s.schedule.log_every, {1, 1000000}, "log line every N steps");
  });

  v.section("outputs", "what the run writes", [&] {
    v.text("run_dir", s.outputs.run_dir, {"a folder path; {name} = the run name", check_nonempty},
           "run folder");
    v.boolean("trace", s.outputs.trace, "record the actor message trace (trace.jsonl)");
    v.boolean("metrics", s.outputs.metrics, "write metrics.jsonl");
    v.boolean("report", s.outputs.report, "write summary.txt and report.svg at the end");
  });

  v.section("seeds", "reproducibility", [&] {
    integer(v, "global", s.seeds.global, {0, INT64_MAX}, "model init and sampling seed");
    integer(v, "data", s.seeds.data, {0, INT64_MAX}, "task prompt generator seed");
  });
}

// ---- path lists for suggestions ---------------------------------------------------------------

namespace {

class PathCollector final : public SchemaVisitor {
 public:
  std::vector<std::string> paths;

  void section(std::string_view key, std::string_view, const std::function<void()>& body) override {
    prefix_.push_back(std::string(key));
    body();
    prefix_.pop_back();
  }
  void integer(std::string_view k, int64_t&, const IntRule&, std::string_view) override { add(k); }
  void real(std::string_view k, double&, const RealRule&, std::string_view) override { add(k); }
  void real_pair(std::string_view k, std::array<double, 2>&, const RealRule&, std::string_view) override { add(k); }
  void optional_real(std::string_view k, std::optional<double>&, const RealRule&, std::string_view) override { add(k); }
  void optional_bytes(std::string_view k, std::optional<uint64_t>&, const BytesRule&, std::string_view) override { add(k); }
  void boolean(std::string_view k, bool&, std::string_view) override { add(k); }
  void text(std::string_view k, std::string&, const TextRule&, std::string_view) override { add(k); }
  void choice(std::string_view k, int&, const ChoiceRule&, std::string_view) override { add(k); }
  void stages(std::string_view k, std::vector<StageSpec>&, std::string_view) override {
    prefix_.push_back(std::string(k) + "[]");
    add("type");
    for (auto t : {StageType::Sft, StageType::Grpo, StageType::Eval}) {
      StageSpec st = default_stage(t);
      describe_stage_fields(*this, st);
    }
    prefix_.pop_back();
  }

 private:
  void add(std::string_view k) {
    std::string p;
    for (const auto& s : prefix_) p += s + ".";
    p += k;
    if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(p);
  }
  std::vector<std::string> prefix_;
};

// Which stage types have a field of this name.
class StageFieldFinder final : public SchemaVisitor {
 public:
  explicit StageFieldFinder(std::string_view key) : key_(key) {}
  bool found = false;
  void section(std::string_view, std::string_view, const std::function<void()>& body) override { body(); }
  void integer(std::string_view k, int64_t&, const IntRule&, std::string_view) override { hit(k); }
  void real(std::string_view k, double&, const RealRule&, std::string_view) override { hit(k); }
  void real_pair(std::string_view k, std::array<double, 2>&, const RealRule&, std::string_view) override { hit(k); }
  void optional_real(std::string_view k, std::optional<double>&, const RealRule&, std::string_view) override { hit(k); }
  void optional_bytes(std::string_view k, std::optional<uint64_t>&, const BytesRule&, std::string_view) override { hit(k); }
  void boolean(std::string_view k, bool&, std::string_view) override { hit(k); }
  void text(std::string_view k, std::string&, const TextRule&, std::string_view) override { hit(k); }
  void choice(std::string_view k, int&, const ChoiceRule&, std::string_view) override { hit(k); }
  void stages(std::string_view, std::vector<StageSpec>&, std::string_view) override {}

 private:
  void hit(std::string_view k) { found = found || k == key_; }
  std::string_view key_;
};

}  // namespace

const std::vector<std::string>& all_field_paths() {
  static const std::vector<std::string> paths = [] {
    PathCollector c;
    WorkflowSpec s;
    describe_workflow(c, s);
    return c.paths;
  }();
  return paths;
}

std::string stage_types_with_field(std::string_view key) {
  std::string out;
  for (auto t : {StageType::Sft, StageType::Grpo, StageType::Eval}) {
    StageFieldFinder f(key);
    StageSpec st = default_stage(t);
    describe_stage_fields(f, st);
    if (f.found) out += (out.empty() ? "" : ", ") + std::string(to_string(t));
  }
  return out;
}

}  // namespace siesta::workflows::detail
