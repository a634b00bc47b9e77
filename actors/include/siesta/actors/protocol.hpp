// The whole message protocol of a colocated RL step, in one place. Per GPU a worker hosts four
// actors — engine, trainer, memory manager, weight syncer — and the coordinator drives each
// step through them:
//
//   engine.generate  ->  engine.sleep(2)  ->  trainer.restore  ->  trainer.train
//   ->  trainer.offload  ->  engine.wake([weights])  ->  syncer.sync  ->  engine.wake([kv_cache])
//
// Every sleep, wake and large allocation asks the memory manager first (reserve/release), so a
// wake that would not fit is refused with the numbers before the driver is touched.
//
// In a multi-process run a worker process joins the coordinator through the join actor
// (JoinInfo out, JoinedWorker back; see worker_join.hpp), and every message here then crosses
// CAF's middleman: each type is in the type-ID block below, which register_types() registers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace siesta::actors {

// ---- messages -------------------------------------------------------------------------------

struct RolloutRequest {
  int64_t step = 0;
  std::vector<std::string> prompts;   // one group of `n` samples per prompt
  int32_t n = 1;
  float temperature = 1.f;
  float top_p = 1.f;
  int32_t max_new_tokens = 16;
  uint64_t seed = 0;
};

struct Rollout {
  int32_t prompt_index = 0;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> tokens;        // generated
  std::vector<float> logprobs;        // of the generated tokens, from the engine
  std::string text;                   // generated text
  float reward = 0.f;                 // filled by the coordinator from the task
};

struct RolloutBatch {
  int64_t step = 0;
  std::vector<Rollout> rollouts;
  int64_t generated_tokens = 0;
  double seconds = 0;
};

struct TrainReport {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;
  double seconds = 0;
};

struct EngineStatus {
  bool is_sleeping = false;
  bool weights_awake = true;
  bool kv_awake = true;
  bool weights_valid = true;
  int32_t sleep_level = 0;
  uint64_t device_used_bytes = 0;
  uint64_t weights_bytes = 0;
  uint64_t kv_cache_bytes = 0;
};

struct MemoryRequest {
  std::string owner;   // "engine", "trainer", "syncer"
  std::string tag;     // allocator tag
  uint64_t bytes = 0;  // 0 in a release means everything (owner, tag) holds
};

struct MemorySnapshot {
  uint64_t capacity_bytes = 0;
  uint64_t held_bytes = 0;
  uint64_t peak_held_bytes = 0;
  uint64_t device_used_bytes = 0;
  std::string holders;
  uint64_t engine_held_bytes = 0;   // what the engine holds (weights + KV cache)
};

struct SyncReport {
  int64_t version = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  uint64_t peak_staging_bytes = 0;
};

// What the trainer does from now on (sent at each stage start of a workflow).
struct TrainStage {
  std::string kind = "grpo";      // "sft" or "grpo"
  double lr = 1e-3, min_lr = 1e-3;
  int64_t warmup_steps = 0, total_steps = 0;   // of this stage; 0 total = constant lr
  int32_t group_size = 8;         // GRPO samples per prompt
  float clip_eps = 0.2f;
  float kl_coef = 0.f;
  int32_t sft_examples_per_step = 32;
  int64_t start_step = -1;        // trainer step the stage began at (resume); -1 = now
};

struct NcclId {
  std::array<uint8_t, 128> bytes{};
};

// ---- multi-process runs: a worker process joins the coordinator ----------------------------

// What the coordinator tells a joining worker process: the run, and where its weight transport
// meets (rank 0 hosts it).
struct JoinInfo {
  std::string workflow_yaml;   // the resolved workflow; the worker builds its rank from it
  int32_t world_size = 1;
  std::string transport;       // "host" (CPU) or "nccl" (CUDA)
  std::string host_addr;       // host transport: rank 0 listens at host_addr:host_port
  uint16_t host_port = 0;
  uint64_t session_id = 0;     // host transport: peers of another run are refused
  NcclId nccl_id;              // nccl: the communicator's unique id
  // Where this rank writes its own message trace: "<stem>.rank-<rank>.jsonl" beside the
  // coordinator's; empty when the run traces nothing. A worker on another host that cannot
  // write there says so and runs untraced.
  std::string trace_stem;
};

struct WorkerHandles;
struct JoinedWorker;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RolloutRequest& x) {
  return f(caf::meta::type_name("RolloutRequest"), x.step, x.prompts, x.n, x.temperature, x.top_p,
           x.max_new_tokens, x.seed);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Rollout& x) {
  return f(caf::meta::type_name("Rollout"), x.prompt_index, x.prompt_tokens, x.tokens, x.logprobs,
           x.text, x.reward);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RolloutBatch& x) {
  return f(caf::meta::type_name("RolloutBatch"), x.step, x.rollouts, x.generated_tokens, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TrainReport& x) {
  return f(caf::meta::type_name("TrainReport"), x.step, x.loss, x.grad_norm, x.lr, x.tokens,
           x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EngineStatus& x) {
  return f(caf::meta::type_name("EngineStatus"), x.is_sleeping, x.weights_awake, x.kv_awake,
           x.weights_valid, x.sleep_level, x.device_used_bytes, x.weights_bytes, x.kv_cache_bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, MemoryRequest& x) {
  return f(caf::meta::type_name("MemoryRequest"), x.owner, x.tag, x.bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, MemorySnapshot& x) {
  return f(caf::meta::type_name("MemorySnapshot"), x.capacity_bytes, x.held_bytes,
           x.peak_held_bytes, x.device_used_bytes, x.holders, x.engine_held_bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SyncReport& x) {
  return f(caf::meta::type_name("SyncReport"), x.version, x.bytes, x.seconds, x.peak_staging_bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TrainStage& x) {
  return f(caf::meta::type_name("TrainStage"), x.kind, x.lr, x.min_lr, x.warmup_steps,
           x.total_steps, x.group_size, x.clip_eps, x.kl_coef, x.sft_examples_per_step,
           x.start_step);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NcclId& x) {
  return f(caf::meta::type_name("NcclId"), x.bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinInfo& x) {
  return f(caf::meta::type_name("JoinInfo"), x.workflow_yaml, x.world_size, x.transport,
           x.host_addr, x.host_port, x.session_id, x.nccl_id, x.trace_stem);
}

}  // namespace siesta::actors

CAF_BEGIN_TYPE_ID_BLOCK(siesta, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::RolloutRequest))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::Rollout))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::RolloutBatch))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::TrainReport))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::EngineStatus))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::MemoryRequest))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::MemorySnapshot))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::SyncReport))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::NcclId))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::TrainStage))
  CAF_ADD_TYPE_ID(siesta, (std::vector<siesta::actors::Rollout>))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::JoinInfo))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::WorkerHandles))
  CAF_ADD_TYPE_ID(siesta, (siesta::actors::JoinedWorker))
  CAF_ADD_ATOM(siesta, siesta::actors, generate_atom, "generate")
  CAF_ADD_ATOM(siesta, siesta::actors, sleep_atom, "sleep")
  CAF_ADD_ATOM(siesta, siesta::actors, wake_atom, "wake")
  CAF_ADD_ATOM(siesta, siesta::actors, status_atom, "status")
  CAF_ADD_ATOM(siesta, siesta::actors, train_atom, "train")
  CAF_ADD_ATOM(siesta, siesta::actors, sft_atom, "sft")
  CAF_ADD_ATOM(siesta, siesta::actors, offload_atom, "offload")
  CAF_ADD_ATOM(siesta, siesta::actors, restore_atom, "restore")
  CAF_ADD_ATOM(siesta, siesta::actors, ckpt_atom, "checkpoint")
  CAF_ADD_ATOM(siesta, siesta::actors, reserve_atom, "reserve")
  CAF_ADD_ATOM(siesta, siesta::actors, release_atom, "release")
  CAF_ADD_ATOM(siesta, siesta::actors, sample_atom, "sample")
  CAF_ADD_ATOM(siesta, siesta::actors, sync_atom, "sync")
  CAF_ADD_ATOM(siesta, siesta::actors, join_atom, "join")
  CAF_ADD_ATOM(siesta, siesta::actors, stage_atom, "stage")
  CAF_ADD_ATOM(siesta, siesta::actors, resume_atom, "resume")
  CAF_ADD_ATOM(siesta, siesta::actors, ready_atom, "ready")
  CAF_ADD_ATOM(siesta, siesta::actors, done_atom, "done")
CAF_END_TYPE_ID_BLOCK(siesta)

namespace siesta::actors {

// ---- interfaces -----------------------------------------------------------------------------

using engine_actor = caf::typed_actor<
    caf::replies_to<generate_atom, RolloutRequest>::with<RolloutBatch>,
    caf::replies_to<sleep_atom, int32_t>::with<EngineStatus>,                   // level 1 or 2
    caf::replies_to<wake_atom, std::vector<std::string>>::with<EngineStatus>,  // tags, {} = all
    caf::replies_to<status_atom>::with<EngineStatus>,
    caf::replies_to<sync_atom, int64_t>::with<EngineStatus>>;  // the syncer wrote weights v

using trainer_actor = caf::typed_actor<
    caf::replies_to<train_atom, RolloutBatch>::with<TrainReport>,   // GRPO on scored rollouts
    caf::replies_to<sft_atom, int64_t>::with<TrainReport>,          // one SFT step (step number)
    // keep_weights: optimizer state and gradients only (the weights stay for the sync) ->
    // device bytes this call freed
    caf::replies_to<offload_atom, bool>::with<uint64_t>,
    caf::replies_to<restore_atom>::with<uint64_t>,                  // device bytes mapped again
    caf::replies_to<ckpt_atom, std::string>::with<std::string>,     // folder -> file written
    caf::replies_to<stage_atom, TrainStage>::with<int64_t>,         // -> 0 once applied
    caf::replies_to<resume_atom, std::string>::with<int64_t>>;      // checkpoint file -> steps

using memory_actor = caf::typed_actor<
    caf::replies_to<reserve_atom, MemoryRequest>::with<uint64_t>,   // -> free bytes after
    caf::replies_to<release_atom, MemoryRequest>::with<uint64_t>,
    caf::replies_to<sample_atom>::with<MemorySnapshot>>;

using syncer_actor = caf::typed_actor<
    caf::replies_to<sync_atom, int64_t>::with<SyncReport>>;         // weights version

// What a worker (one per GPU) hands the coordinator when it joins.
struct WorkerHandles {
  int32_t rank = 0;
  engine_actor engine;
  trainer_actor trainer;   // null on ranks without a trainer
  memory_actor memory;
  syncer_actor syncer;
};

// What a worker process hands the coordinator once its actors run.
struct JoinedWorker {
  WorkerHandles handles;
  caf::actor control;      // answers (done_atom, exit code, reason): the run ended, exit
  std::string host;        // where the process runs, for messages
  int32_t pid = 0;
  std::string device;      // "cpu", "cuda:1"
  uint64_t budget_bytes = 0, free_bytes = 0;   // device memory at join (the trace header)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WorkerHandles& x) {
  return f(caf::meta::type_name("WorkerHandles"), x.rank, x.engine, x.trainer, x.memory, x.syncer);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinedWorker& x) {
  return f(caf::meta::type_name("JoinedWorker"), x.handles, x.control, x.host, x.pid, x.device,
           x.budget_bytes, x.free_bytes);
}

// The coordinator's join point, published on MASTER_PORT: a worker process asks for the run
// (its rank, the world size it was started with), builds its actors, then reports them ready.
using join_actor = caf::typed_actor<
    caf::replies_to<join_atom, int32_t, int32_t>::with<JoinInfo>,   // rank, world size
    caf::replies_to<ready_atom, JoinedWorker>::with<int32_t>>;      // -> its rank

// Registers the message types above with a CAF config: both processes of a remote run need it,
// since only registered types cross the middleman.
void register_types(caf::actor_system_config& cfg);

}  // namespace siesta::actors
