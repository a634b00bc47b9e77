// What the trainer actor drives. siesta's own trainer implements it (BuiltinTrainer); a training
// application embedding siesta implements it with its own model and optimizer, and siesta's
// engine, memory manager and weight syncer do the rest.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "siesta/actors/protocol.hpp"
#include "siesta/comm/weight_sync.hpp"

namespace siesta::allocator {
class Pool;
}
namespace siesta::train {
class Trainer;
class Task;
}  // namespace siesta::train

namespace siesta::actors {

class TrainerBackend {
 public:
  virtual ~TrainerBackend() = default;
  // Settings of the stage that starts now (learning rate schedule, GRPO group size, ...).
  virtual void begin_stage(const TrainStage& stage) = 0;
  // One GRPO step on scored rollouts (n per prompt, group_size of the current stage).
  virtual TrainReport train(const RolloutBatch& batch) = 0;
  // One supervised step on the task's own examples; backends without SFT throw.
  virtual TrainReport sft(int64_t step) = 0;
  // Moves the trainer's state off the device; with keep_weights only what the weight sync does
  // not need (optimizer state, gradients, activations). Returns the device bytes freed.
  virtual uint64_t offload(bool keep_weights) = 0;
  // Brings all of it back; returns the device bytes mapped again.
  virtual uint64_t restore() = 0;
  // The weights to broadcast, as views (on the trainer's device) in any float dtype.
  virtual std::vector<comm::NamedTensor> weights() = 0;
  // Writes a checkpoint into folder (atomically) and returns the file written.
  virtual std::string checkpoint(const std::string& folder) = 0;
  // Loads a checkpoint written by checkpoint(); returns the optimizer steps it had taken.
  virtual int64_t resume(const std::string& file) = 0;
};

struct BuiltinTrainerOptions {
  bool scale_advantages_by_std = true;
};

// siesta's trainer (engine/train) on a verifiable task with the byte tokenizer.
// pool is the one the trainer allocates from (its tags measure the state it offloads).
std::unique_ptr<TrainerBackend> make_builtin_trainer(train::Trainer& trainer, allocator::Pool& pool,
                                                     const train::Task& task,
                                                     BuiltinTrainerOptions opts);

}  // namespace siesta::actors
