// The engine's state, shared by engine.cpp (construction, requests, steps) and
// engine_sleep.cpp (sleep/wake, weight updates).
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model_runner.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/infer/block_manager.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/infer/scheduler.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/weights.hpp"

namespace siesta::infer {

// Allocator tags the engine uses (see engine.hpp).
inline const char* const kTagWeights = "weights";
inline const char* const kTagKv = "kv_cache";
inline const char* const kTagBuffers = "buffers";
inline const char* const kTagWorkspace = "infer_workspace";

struct InferenceEngine::Impl {
  EngineOptions opt;
  model::ModelConfig cfg;
  std::unique_ptr<kernels::Ops> ops;
  std::shared_ptr<allocator::Pool> pool;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::vector<int32_t> eos;
  DType dtype = DType::F32;

  allocator::Allocation weights_alloc, kv_alloc, rope_alloc, ws_alloc;
  model::ModelWeights weights;
  int max_model_len = 0, max_num_batched_tokens = 0, num_blocks = 0;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<ModelRunner> runner;

  std::map<RequestId, std::unique_ptr<Request>> requests;   // unfinished
  std::vector<RequestOutput> finished;                      // not yet returned by step()
  RequestId next_id = 1;
  uint64_t next_arrival = 0;
  int64_t next_seq_id = 0;
  std::mt19937_64 seed_rng;

  SleepState sleep;
  bool draining = false;
  std::set<std::string> written_since_wake;   // weights rewritten after a level-2 wake

  uint64_t n_finished = 0, n_steps = 0, prompt_tokens = 0, gen_tokens = 0;
  double last_step_ms = 0, last_step_launch_ms = 0;

  // A step queued on the device whose draw has not been read yet. With async scheduling a
  // decode step is followed by the next one before its tokens reach the host (the next takes
  // them from the device); at most two are in flight, completed in launch order.
  struct InFlight {
    uint64_t id = 0;
    ModelRunner::Launch launch;
    std::vector<Sequence*> seqs;
    std::vector<int> fanout;
    std::vector<kernels::SamplingRow> rows;
    std::vector<bool> prefill;      // per sequence: its prompt is computed in this step
    bool host_drawn = false;        // some row uses top_k / top_p (drawn on the host)
    bool placeholders = false;      // each sequence already holds a token slot for this draw
    std::chrono::steady_clock::time_point t0;
    double launch_ms = 0;
  };
  std::deque<InFlight> inflight;
  uint64_t next_step_id = 0, n_lookahead = 0;
  // Requests retired while a step in flight may still point at their sequences, with the id
  // of the step whose completion retired them; freed once the step after it completed.
  std::vector<std::pair<uint64_t, std::unique_ptr<Request>>> retired;

  // ---- engine.cpp ----
  void build(EngineOptions options);
  void check_can_generate() const;
  void check_request(const std::vector<int32_t>& prompt, const SamplingParams& p) const;
  RequestId add_request(std::vector<int32_t> prompt, const SamplingParams& p, DeltaCallback cb);
  void step();
  void launch(SchedulerOutput out, std::chrono::steady_clock::time_point t0,
              const InFlight* inputs_from);
  bool try_lookahead();
  void complete_oldest();
  void settle();   // completes every step in flight (before sleep, weight changes)
  bool abort(RequestId id, const std::string& reason);
  // Appends a drawn token (into the slot reserved for it, if any) and applies stop rules.
  void append_token(Sequence& s, int32_t token, float logprob, bool into_placeholder = false);
  void finish(Sequence& s, FinishReason r, std::string stop_reason, bool text_final = false);
  void deliver(Sequence& s);
  void retire_if_done(RequestId id);
  RequestOutput make_output(const Request& r) const;
  void decode_text(Sequence& s, bool drop_last_token);
  std::vector<RequestOutput> take_finished();

  // ---- engine_sleep.cpp ----
  void do_sleep(int level, SleepPolicy policy);
  void do_wake(const std::vector<std::string>& tags);
  void do_update_weights(const std::vector<WeightUpdate>& tensors);
  void do_load_weights(const std::filesystem::path& folder);
};

}  // namespace siesta::infer
