// Behaviours of the per-GPU actors. Each runs detached (its own thread), because its handlers
// block on device work; the coordinator and the memory manager stay on the scheduler.
#pragma once

#include <functional>
#include <memory>

#include "siesta/actors/protocol.hpp"
#include "siesta/actors/trainer_backend.hpp"
#include "siesta/actors/tracing.hpp"

namespace siesta::infer {
class InferenceEngine;
}
namespace siesta::comm {
class Transport;
}

namespace siesta::actors {

struct TrainerActorConfig {
  int rank = 0;
  std::shared_ptr<TrainerBackend> backend;
  std::shared_ptr<Tracing> tracing;
};
trainer_actor::behavior_type trainer_behavior(trainer_actor::pointer self, TrainerActorConfig cfg);

struct EngineActorConfig {
  int rank = 0;
  std::shared_ptr<infer::InferenceEngine> engine;
  std::shared_ptr<Tracing> tracing;
};
engine_actor::behavior_type engine_behavior(engine_actor::pointer self, EngineActorConfig cfg);

struct SyncerActorConfig {
  int rank = 0;
  int root = 0;                                       // the rank whose trainer broadcasts
  std::shared_ptr<TrainerBackend> trainer;            // the weights to send (root rank)
  std::shared_ptr<infer::InferenceEngine> engine;     // the weights to receive into
  std::shared_ptr<comm::Transport> transport;
  engine_actor engine_handle;                         // told when new weights are in place
  uint64_t bucket_bytes = 256ull << 20;
  std::shared_ptr<Tracing> tracing;
};
syncer_actor::behavior_type syncer_behavior(syncer_actor::pointer self, SyncerActorConfig cfg);

}  // namespace siesta::actors
