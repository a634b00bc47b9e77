// The application's own trainer behind siesta's TrainerBackend interface: REINFORCE with a
// leave-one-out baseline (RLOO) and Adam, written directly over the public model and kernels
// API (model::TrainingModel forward/backward, kernels::Ops). It differs from siesta's built-in
// GRPO trainer on purpose: no importance ratio or clipping (one on-policy update per batch),
// advantages r_i - mean(other rewards of the same prompt) without std scaling, rollouts without
// signal (advantage 0) are never forwarded, and the state lives in the application's own
// allocator pool under its own tags, which it offloads and restores itself.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "siesta/actors/trainer_backend.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/training.hpp"
#include "siesta/model/weights.hpp"

namespace embed_example {

struct ReinforceOptions {
  std::string model = "tiny";                // preset name or HF folder (its config.json)
  siesta::Device device = siesta::Device::cpu();
  uint64_t seed = 0;                         // random initial weights
  int micro_batch_rows = 16;                 // rollouts per forward/backward
  int max_seq_len = 64;                      // prompt + completion tokens of one rollout
  double max_grad_norm = 1.0;                // global-norm clipping; 0 disables
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// Leave-one-out advantages: rollout i of prompt p gets r_i - mean(r_j, j != i, same p); a
// prompt with a single rollout gives 0. Exposed for the example's own sanity check.
std::vector<float> leave_one_out_advantages(const std::vector<int32_t>& prompt_index,
                                            const std::vector<float>& reward);

class ReinforceTrainer final : public siesta::actors::TrainerBackend {
 public:
  explicit ReinforceTrainer(ReinforceOptions options);
  ~ReinforceTrainer() override;

  void begin_stage(const siesta::actors::TrainStage& stage) override;
  siesta::actors::TrainReport train(const siesta::actors::RolloutBatch& batch) override;
  siesta::actors::TrainReport sft(int64_t step) override;   // not offered: throws
  uint64_t offload(bool keep_weights) override;
  uint64_t restore() override;
  std::vector<siesta::comm::NamedTensor> weights() override;
  std::string checkpoint(const std::string& folder) override;
  int64_t resume(const std::string& file) override;

  // The fp32 parameters on the host (parameter_specs layout with padding), for the app's checks.
  // Wakes offloaded state for the copy (outside the memory manager's budget): call it between
  // steps only, when no trainer request is in flight.
  std::vector<float> params_host();
  const siesta::model::ModelConfig& config() const { return cfg_; }
  int64_t steps() const { return step_; }

 private:
  struct Chunk;
  void train_chunk(const Chunk& c, double norm, double& loss);
  uint64_t mapped_bytes() const;   // device bytes our tags have mapped now
  template <class F> void with_state_awake(F&& f);

  ReinforceOptions opts_;
  siesta::model::ModelConfig cfg_;
  std::unique_ptr<siesta::kernels::Ops> ops_;
  std::unique_ptr<siesta::allocator::Pool> pool_;
  int64_t numel_ = 0;
  siesta::allocator::Allocation params_, rope_, compute_, grads_, moments_, activations_, io_;
  bool separate_compute_ = false;   // bf16 compute copy (CUDA); on the CPU compute == params
  int32_t* tokens_dev_ = nullptr;
  float *lp_dev_ = nullptr, *dlp_dev_ = nullptr, *norm_dev_ = nullptr;
  std::unique_ptr<siesta::model::TrainingModel> model_;
  double lr_ = 1e-3;
  int64_t step_ = 0;
};

}  // namespace embed_example
