// Cross-field rules of a workflow.
#include "consistency.hpp"

#include <optional>
#include <tuple>

#include "siesta/model/presets.hpp"
#include "siesta/train/task.hpp"

#include "scalars.hpp"
#include "schema.hpp"

namespace siesta::workflows::detail {

namespace {

class Checker {
 public:
  Checker(const LocationMap& locations, const std::string& origin, std::vector<Diagnostic>& out)
      : locations_(locations), origin_(origin), out_(out) {}

  bool is_set(const std::string& path) const { return locations_.count(path) > 0; }

  // Reported where `path` was set, or where its nearest enclosing section was.
  void fail(const std::string& path, const std::string& message, const std::string& allowed) {
    // A field that already failed its own check holds its default; do not pile on.
    for (const auto& prior : out_)
      if (prior.path == path) return;
    Diagnostic d;
    d.origin = origin_;
    for (std::string p = path; !p.empty();) {
      auto it = locations_.find(p);
      if (it != locations_.end()) {
        d.origin = it->second.origin;
        d.line = it->second.line;
        d.column = it->second.column;
        d.source_index = it->second.source_index;
        break;
      }
      auto cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
    d.path = path;
    d.message = message;
    d.allowed = allowed;
    out_.push_back(std::move(d));
  }

  // The later-set of two fields, so that the error points at what the user added last.
  std::string later(const std::string& a, const std::string& b) const {
    auto ia = locations_.find(a), ib = locations_.find(b);
    if (ia == locations_.end()) return b;
    if (ib == locations_.end()) return a;
    auto key = [](const Location& l) { return std::tuple(l.source_index, l.line, l.column); };
    return key(ia->second) > key(ib->second) ? a : b;
  }

 private:
  const LocationMap& locations_;
  const std::string& origin_;
  std::vector<Diagnostic>& out_;
};

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.starts_with("127.") || addr == "::1";
}

}  // namespace

void check_consistency(const WorkflowSpec& s, const LocationMap& locations,
                       const std::string& origin, std::vector<Diagnostic>& out) {
  Checker c(locations, origin, out);
  const bool cpu = s.devices.device == Device::Cpu;

  if (s.engine.kv_cache_bytes && s.engine.gpu_memory_utilization) {
    auto p = c.later("engine.kv_cache_bytes", "engine.gpu_memory_utilization");
    auto other = p == "engine.kv_cache_bytes" ? "engine.gpu_memory_utilization" : "engine.kv_cache_bytes";
    c.fail(p, std::string("cannot be set together with ") + other + "; they both size the KV cache",
           "one of kv_cache_bytes, gpu_memory_utilization (the other null)");
  }

  if (cpu) {
    if (s.devices.gpus > 1)
      c.fail("devices.gpus", std::to_string(s.devices.gpus) + " GPUs asked for with devices.device: cpu",
             "1 with device cpu; device cuda or auto for more GPUs");
    if (s.trainer.precision == Precision::Bf16)
      c.fail("trainer.precision", "bf16 needs device cuda; the CPU trainer computes in fp32",
             "fp32 or auto with device cpu");
    if (s.devices.transport == Transport::Nccl)
      c.fail("devices.transport", "nccl needs device cuda", "host or auto with device cpu");
    if (s.trainer.offload_state)
      c.fail("trainer.offload_state", "offloading to host memory needs device cuda",
             "false with device cpu");
    if (s.engine.gpu_memory_utilization)
      c.fail("engine.gpu_memory_utilization", "a GPU memory fraction needs device cuda",
             "null with device cpu; size the KV cache with engine.kv_cache_bytes");
  } else if (s.devices.workers_per_node != s.devices.gpus &&
             (s.devices.device == Device::Cuda || c.is_set("devices.gpus") ||
              c.is_set("devices.workers_per_node"))) {
    c.fail(c.later("devices.workers_per_node", "devices.gpus"),
           "workers_per_node " + std::to_string(s.devices.workers_per_node) + " with gpus " +
               std::to_string(s.devices.gpus) + "; each GPU is driven by its own worker process",
           "workers_per_node equal to gpus (" + std::to_string(s.devices.gpus) + ")");
  }

  if (s.devices.nodes > 1 && s.devices.launch == Launch::InProcess)
    c.fail("devices.launch",
           "in_process runs every rank inside `siesta run`, so it cannot use " +
               std::to_string(s.devices.nodes) + " nodes",
           "processes or external with devices.nodes > 1");
  if (s.devices.master_port == 0 && (s.devices.nodes > 1 || s.devices.launch == Launch::External))
    c.fail("devices.master_port",
           "0 picks a free port that workers started elsewhere cannot know",
           "a fixed port 1..65535 with launch external or devices.nodes > 1");

  if (s.devices.nodes > 1 && is_loopback(s.devices.master_addr))
    c.fail("devices.master_addr",
           "'" + s.devices.master_addr + "' cannot be reached from the other " +
               std::to_string(s.devices.nodes - 1) + " node(s)",
           "the coordinator's host name or IP address");

  const auto& d = s.task.difficulty;
  if (d.min_digits > d.max_digits)
    c.fail(c.later("task.difficulty.min_digits", "task.difficulty.max_digits"),
           "min_digits " + std::to_string(d.min_digits) + " is above max_digits " +
               std::to_string(d.max_digits),
           "min_digits <= max_digits");
  if (d.min_length > d.max_length)
    c.fail(c.later("task.difficulty.min_length", "task.difficulty.max_length"),
           "min_length " + std::to_string(d.min_length) + " is above max_length " +
               std::to_string(d.max_length),
           "min_length <= max_length");

  // The task itself (the trainer's own checks), then what its sequences need from the engine.
  bool task_reported = false;
  for (const auto& prior : out) task_reported = task_reported || prior.path.starts_with("task.");
  if (task_reported) return;
  std::optional<train::Task> task;
  try {
    task.emplace(task_spec_of(s));
    // A prompt space too small to hold out evaluation prompts fails here, not mid-run.
    (void)task->train_example(0);
    (void)task->eval_example(0);
  } catch (const std::exception& e) {
    c.fail(s.task.name == TaskKind::Addition ? "task.difficulty.max_digits" : "task.difficulty.max_length",
           e.what(), "a larger difficulty range or alphabet");
    return;
  }
  const int answer_tokens = task->max_answer_chars() + 1;  // + eos
  int longest_new = answer_tokens;
  std::string longest_from = "the task's longest answer and eos";
  for (size_t i = 0; i < s.stages.size(); ++i) {
    int max_new = 0;
    if (auto* g = std::get_if<GrpoStage>(&s.stages[i])) max_new = g->max_new_tokens;
    if (auto* e = std::get_if<EvalStage>(&s.stages[i])) max_new = e->max_new_tokens;
    if (max_new == 0) continue;
    const std::string path = "algorithm.stages[" + std::to_string(i) + "].max_new_tokens";
    if (max_new < answer_tokens)
      c.fail(path,
             std::to_string(max_new) + " cannot hold the longest answer of " + task->description() +
                 " (" + std::to_string(answer_tokens - 1) + " characters and eos); no sample could be right",
             ">= " + std::to_string(answer_tokens));
    if (max_new > longest_new) {
      longest_new = max_new;
      longest_from = path;
    }
  }
  const int longest = 1 + task->max_prompt_chars() + longest_new + 1;
  if (longest > s.engine.max_model_len) {
    // Blame the stage's max_new_tokens only when shrinking it would do (room for the answer
    // remains) and it was written after max_model_len; otherwise max_model_len is too small.
    const int room = s.engine.max_model_len - (longest - longest_new);
    std::string at = longest_from.starts_with("algorithm.") && room >= answer_tokens
                         ? c.later("engine.max_model_len", longest_from)
                         : std::string("engine.max_model_len");
    if (at == "engine.max_model_len")
      c.fail(at,
             std::to_string(s.engine.max_model_len) + " cannot hold the longest sequence, " +
                 std::to_string(longest) + " tokens: bos, " + std::to_string(task->max_prompt_chars()) +
                 " of prompt, " + std::to_string(longest_new) + " of completion (" + longest_from +
                 "), eos",
             ">= " + std::to_string(longest));
    else
      c.fail(at,
             std::to_string(longest_new) + " with bos, the longest prompt (" +
                 std::to_string(task->max_prompt_chars()) + ") and eos makes " + std::to_string(longest) +
                 " tokens, more than engine.max_model_len " + std::to_string(s.engine.max_model_len),
             std::to_string(answer_tokens) + ".." + std::to_string(room) +
                 ", or a larger engine.max_model_len");
  }
  // The model's positions bound the engine's sequences.
  try {
    const auto cfg = model::resolve_model_config(s.model);
    if (cfg.max_position_embeddings > 0 && s.engine.max_model_len > cfg.max_position_embeddings)
      c.fail("engine.max_model_len",
             std::to_string(s.engine.max_model_len) + " is above the model's max_position_embeddings " +
                 std::to_string(cfg.max_position_embeddings) + " (" + s.model + ")",
             "engine.max_model_len <= " + std::to_string(cfg.max_position_embeddings));
    // A KV cache must hold at least one sequence of max_model_len tokens (K and V of every
    // layer; 2 bytes an element is the smallest the engine stores, bf16 on cuda).
    const int head_dim = cfg.head_dim > 0 ? cfg.head_dim
                                          : cfg.hidden_size / std::max(1, cfg.num_attention_heads);
    const uint64_t per_token = 2ull * uint64_t(cfg.num_hidden_layers) *
                               uint64_t(cfg.num_key_value_heads) * uint64_t(head_dim) * 2ull;
    const uint64_t blocks = (uint64_t(s.engine.max_model_len) + uint64_t(s.engine.block_size) - 1) /
                            uint64_t(s.engine.block_size);
    const uint64_t one_sequence = blocks * uint64_t(s.engine.block_size) * per_token;
    if (s.engine.kv_cache_bytes && *s.engine.kv_cache_bytes < one_sequence)
      c.fail("engine.kv_cache_bytes",
             format_bytes(*s.engine.kv_cache_bytes) + " cannot hold one sequence of engine.max_model_len " +
                 std::to_string(s.engine.max_model_len) + " tokens of " + s.model + " (" +
                 format_bytes(one_sequence) + " at 2 bytes an element)",
             ">= " + format_bytes(one_sequence) + ", or null to size it from engine.max_batch");
  } catch (const std::exception& e) {
    c.fail("model", e.what(), "a preset or a folder with a valid config.json");
  }
}

}  // namespace siesta::workflows::detail
