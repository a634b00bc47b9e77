// The inference engine: a model, its paged KV cache and a continuous-batching scheduler, in
// one sleep-capable allocator pool, with vLLM's sleep-mode semantics.
//
// Memory (all in one allocator::Pool, every pointer fixed for the engine's life):
//   "weights"         one allocation: every parameter (model::ModelWeights layout)
//   "kv_cache"        one allocation: K and V of every layer, paged
//   "buffers"         rope cos/sin table (small; kept in host memory while asleep)
//   "infer_workspace" forward activations, logits, batch metadata (content never needed
//                     across steps: discarded by any sleep, remapped with the KV cache)
//
// Sleep mode (vLLM):
//   sleep(1): weights (and buffers) copied to the host backup, KV cache discarded.
//   sleep(2): weights and KV cache discarded, buffers kept in host memory.
//   wake_up(tags): tags ⊆ {"weights", "kv_cache"}, empty = both. After a level-2 sleep the
//     woken weights are undefined: generation is refused (ErrorKind::WeightsNotLoaded) until
//     update_weights() has written every parameter or load_weights() has run.
//   is_sleeping(): true until every tag is awake.
//   Sleeping while requests run drains them (SleepPolicy::Drain, the default) or aborts them
//   (finish_reason Abort, stop_reason says why). After a KV wake the cache is empty.
//   A wake that does not fit (allocator OOM) throws ErrorKind::OutOfMemory and leaves the
//   engine asleep; it can be retried once memory is free.
//   Like vLLM, sleeping while asleep and waking an awake tag are no-ops.
//
// Threading: an InferenceEngine is used from one thread at a time (callbacks run on the
// thread calling step()). AsyncEngine (async_engine.hpp) runs one on its own thread for
// servers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "siesta/allocator/pool.hpp"
#include "siesta/infer/error.hpp"
#include "siesta/infer/outputs.hpp"
#include "siesta/infer/sampling_params.hpp"
#include "siesta/infer/sequence.hpp"
#include "siesta/infer/tokenizer.hpp"
#include "siesta/kernels/tensor.hpp"
#include "siesta/model/config.hpp"

namespace siesta::infer {

struct EngineOptions {
  // An HF folder (config.json + *.safetensors) or a preset name (configs/models/<name>.json;
  // the weights are then random, deterministic in `seed`).
  std::string model;
  Device device = Device::cpu();
  // KV cache size: kv_cache_bytes when > 0, else this fraction of the memory that is free
  // after the weights and workspace are placed (device memory on GPU, available host memory
  // on CPU), like vLLM's gpu_memory_utilization.
  uint64_t kv_cache_bytes = 0;
  double kv_cache_memory_fraction = 0.9;
  int block_size = 16;
  int max_num_seqs = 256;            // sequences per step
  int max_model_len = 0;             // prompt + output tokens; 0 = the model's maximum
  int max_num_batched_tokens = 0;    // tokens per step; 0 = max(min(max_model_len, 8192), 2048)
  bool enable_cuda_graphs = true;    // decode steps replay captured graphs (GPU only)
  // vLLM's async scheduling: while a decode step runs, the next one is queued with the
  // running step's tokens as its input (they never wait for the host), so the host's work
  // between steps overlaps the device's. Tokens are the same either way; a sequence that
  // stops costs one step of wasted compute. Applies to steps of decode-only batches with
  // no waiting request and no top_k / top_p row.
  bool async_scheduling = true;
  uint64_t seed = 0;                 // preset weights; seeds of requests that give none
  // The pool to allocate from (shared with a trainer on the same device); null = own pool.
  std::shared_ptr<allocator::Pool> pool;
  std::shared_ptr<const Tokenizer> tokenizer;       // null = ByteTokenizer
  std::optional<std::vector<int32_t>> eos_token_ids; // unset = the tokenizer's
};

enum class SleepPolicy : uint8_t {
  Drain,  // finish the running requests first (refusing new ones meanwhile)
  Abort,  // abort them: finish_reason Abort, stop_reason "engine sleep (level N)"
};

struct SleepState {
  bool weights_awake = true;
  bool kv_cache_awake = true;
  bool weights_valid = true;   // false after sleep(2) until every weight is rewritten
  int level = 0;               // level of the last sleep while any tag sleeps, else 0
  bool is_sleeping() const { return !weights_awake || !kv_cache_awake; }
};

struct EngineStats {
  int num_running = 0, num_waiting = 0;        // sequences
  int num_unfinished_requests = 0;
  uint64_t num_requests_finished = 0, num_preemptions = 0, num_steps = 0;
  uint64_t prompt_tokens_total = 0, generation_tokens_total = 0;
  int kv_num_blocks = 0, kv_free_blocks = 0, block_size = 0;
  double kv_usage = 0;                         // fraction of blocks in use
  uint64_t weights_bytes = 0, kv_cache_bytes = 0, buffers_bytes = 0, workspace_bytes = 0;
  int num_cuda_graphs = 0;
  uint64_t num_graph_replays = 0;
  // Steps queued before the step in front of them had its tokens read (async scheduling).
  uint64_t num_lookahead_steps = 0;
  // The last completed step, from its scheduling until its tokens were read (with async
  // scheduling a queued-ahead step also waits for the step in front of it).
  double last_step_ms = 0;
  // Of it, the host's part before the forward was on its way: scheduling, the metadata upload,
  // the launch (with a GPU the forward then runs while the host waits for the sampled tokens;
  // on the CPU backend this includes the forward itself).
  double last_step_launch_ms = 0;
  SleepState sleep;
};

// One parameter as update_weights() receives it: host memory or this engine's device, any
// floating dtype (converted to the engine's), the parameter's exact shape.
using WeightUpdate = std::pair<std::string, TensorView>;

struct WeightInfo {
  std::string name;
  Shape shape;
  DType dtype;
};

class InferenceEngine {
 public:
  explicit InferenceEngine(EngineOptions options);
  ~InferenceEngine();
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  // ---- batch API ------------------------------------------------------------------------
  // Runs the prompts to completion (other requests in flight progress too; their outputs
  // come from later step() calls). Outputs in prompt order.
  std::vector<RequestOutput> generate(const std::vector<std::vector<int32_t>>& prompts,
                                      const SamplingParams& params);
  std::vector<RequestOutput> generate_text(const std::vector<std::string>& prompts,
                                           const SamplingParams& params);

  // ---- incremental API (what a server drives) --------------------------------------------
  // Validates and queues a request. on_delta (optional) runs after each step that changed a
  // sample. Throws InferError: InvalidArgument (params, empty or too-long prompt), Sleeping,
  // WeightsNotLoaded.
  RequestId add_request(std::vector<int32_t> prompt, const SamplingParams& params,
                        DeltaCallback on_delta = {});
  // The same checks add_request makes, without queueing (a server answers 400/503 early).
  void check_request(const std::vector<int32_t>& prompt, const SamplingParams& params) const;
  // One scheduler iteration (prefills and decodes together): reads one step's tokens. With
  // async scheduling it first queues the step after it when that one is known in advance
  // (EngineOptions::async_scheduling), so a step may be on the device when step() returns.
  // Returns the requests that finished (in this step, or by abort() since the last call).
  std::vector<RequestOutput> step();
  // Aborts a request (finish_reason Abort, stop_reason = reason). False if unknown/finished.
  bool abort(RequestId id, const std::string& reason = "aborted");
  bool has_unfinished() const;

  // ---- sleep mode -------------------------------------------------------------------------
  void sleep(int level, SleepPolicy policy = SleepPolicy::Drain);
  void wake_up(const std::vector<std::string>& tags = {});
  bool is_sleeping() const;
  SleepState sleep_state() const;
  // Empties the KV cache bookkeeping; only allowed with no request in flight (false then).
  bool reset_prefix_cache();

  // ---- weights ----------------------------------------------------------------------------
  // Writes parameters in place (same addresses: CUDA graphs stay valid). Every tensor is
  // validated (name, shape, dtype, where it lives) before any byte is written.
  void update_weights(const std::vector<WeightUpdate>& tensors);
  // Loads every parameter from an HF folder whose config matches this model.
  void load_weights(const std::filesystem::path& folder);
  std::vector<WeightInfo> weight_infos() const;
  // For a weight syncer that writes every parameter in place itself (a collective receive
  // into the engine's memory): views of the parameters on the engine's device in its dtype,
  // valid while the weights are awake (throws Sleeping otherwise). After the last byte has
  // landed, weights_received() marks them valid, as a complete update_weights() would.
  std::vector<WeightUpdate> weight_destinations();
  void weights_received();
  // Copies the current value of a parameter into host memory (dtype of the engine), for checks.
  std::vector<std::byte> read_weight(const std::string& name) const;

  // ---- introspection ----------------------------------------------------------------------
  EngineStats stats() const;
  const model::ModelConfig& model_config() const;
  const EngineOptions& options() const;
  const Tokenizer& tokenizer() const;
  allocator::Pool& pool();
  int max_model_len() const;
  DType weight_dtype() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace siesta::infer
