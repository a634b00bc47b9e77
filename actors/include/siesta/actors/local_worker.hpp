// A worker: everything one GPU (or the CPU) hosts in a colocated run — one allocator pool shared
// by the inference engine and the trainer, and the four actors (engine, trainer, memory
// manager, weight syncer) that drive them. The engine, trainer and syncer actors are detached
// (their handlers block on device work); the memory manager stays on the scheduler.
//
// Embedding: pass your own TrainerBackend in WorkerOptions::trainer_backend and siesta's engine,
// memory manager and syncer do the rest (see examples/).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <caf/all.hpp>

#include "siesta/actors/protocol.hpp"
#include "siesta/actors/trainer_backend.hpp"
#include "siesta/actors/tracing.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/train/task.hpp"
#include "siesta/train/trainer.hpp"

namespace siesta::comm {
class Transport;
}

namespace siesta::actors {

struct WorkerOptions {
  int rank = 0;
  std::string model = "tiny";          // preset name or HF folder
  Device device = Device::cpu();
  infer::EngineOptions engine;         // model, device and pool are filled in by the worker
  train::TrainerOptions trainer;
  train::TaskSpec task;
  BuiltinTrainerOptions builtin;
  uint64_t seed = 0;                   // initial trainer weights (presets)
  uint64_t pool_chunk_bytes = 0;       // 0 = allocator default
  uint64_t sync_bucket_bytes = 256ull << 20;
  int sync_root = 0;
  // The weight transport; null = a world of one on this device (NCCL on a GPU, host on CPU).
  std::shared_ptr<comm::Transport> transport;
  // Host the trainer on this rank (the broadcast root always does).
  bool host_trainer = true;
  // An application's own trainer; null = siesta's trainer on `task`.
  std::shared_ptr<TrainerBackend> trainer_backend;
  // Device budget of the memory manager; 0 = the device's total memory.
  uint64_t memory_capacity_bytes = 0;
};

class LocalWorker {
 public:
  // Builds the pool, engine and trainer and spawns the actors; throws what they throw.
  LocalWorker(caf::actor_system& sys, WorkerOptions options, std::shared_ptr<Tracing> tracing);
  ~LocalWorker();   // stops the actors and waits for them before freeing what they use
  LocalWorker(const LocalWorker&) = delete;
  LocalWorker& operator=(const LocalWorker&) = delete;

  WorkerHandles handles() const { return handles_; }
  infer::InferenceEngine& engine() { return *engine_; }
  allocator::Pool& pool() { return *pool_; }
  const train::Task* task() const { return task_.get(); }
  // Sends exit messages to the actors (also done by the destructor).
  void stop();

 private:
  caf::actor_system& sys_;
  WorkerOptions opts_;
  std::shared_ptr<Tracing> tracing_;
  std::shared_ptr<allocator::Pool> pool_;
  std::unique_ptr<kernels::Ops> ops_;
  std::unique_ptr<train::Task> task_;
  std::unique_ptr<train::Trainer> trainer_;
  std::shared_ptr<TrainerBackend> backend_;
  std::shared_ptr<infer::InferenceEngine> engine_;
  std::shared_ptr<comm::Transport> transport_;
  WorkerHandles handles_;
  std::vector<caf::actor> spawned_;
  bool stopped_ = false;
};

}  // namespace siesta::actors
