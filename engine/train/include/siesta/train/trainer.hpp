// The trainer over the model: AdamW on fp32 master weights (bf16 compute copy on GPU, fp32
// throughout on CPU), warmup + cosine LR, gradient clipping by global norm, gradient
// accumulation over micro-batches, SFT and GRPO steps, a frozen reference for the KL penalty
// kept off the device between uses, offload/restore of its state, checkpoints, weight export.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/training.hpp"
#include "siesta/model/weights.hpp"
#include "siesta/train/batch.hpp"
#include "siesta/train/loss.hpp"
#include "siesta/train/rng.hpp"
#include "siesta/train/schedule.hpp"
#include "siesta/train/train_state.hpp"

namespace siesta::train {

inline const char* const kTagActivations = "activations";
inline const char* const kTagReference = "train_reference";

struct TrainerOptions {
  LrSchedule lr{};
  AdamWOptions adamw{};
  double max_grad_norm = 1.0;     // clip the global gradient norm to this; 0 disables
  int micro_batch_rows = 8;       // rows per forward/backward; a step accumulates all of them
  int max_seq_len = 256;          // longest row (tokens) a batch may hold
  PolicyLossOptions grpo{};
  LossAggregation sft_aggregation = LossAggregation::TokenMean;
  void validate() const;          // throws TrainError naming the field
};

struct StepStats {
  int64_t step = 0;          // optimizer steps taken, after this one
  double loss = 0;
  double grad_norm = 0;      // before clipping
  double clip_coef = 1;      // factor the gradients were scaled by
  double lr = 0;
  int64_t tokens = 0;        // trained tokens
  int64_t batch_tokens = 0;  // rows * cols processed
  LossStats details;
};

// What a training loop saves with the trainer's state and gets back on resume.
struct TrainProgress {
  Rng::State rng{};
  uint64_t data_position = 0;
  std::string extra = {};
};

class Trainer {
 public:
  // Allocates master weights, gradients, AdamW moments (and the compute copy on GPU) in pool,
  // plus activations for micro_batch_rows x max_seq_len. Weights start at zero: call
  // init_random() or load_weights().
  Trainer(const model::ModelConfig& cfg, TrainerOptions options, kernels::Ops& ops,
          allocator::Pool& pool);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  void init_random(uint64_t seed, float std = 0.02f);
  void load_model_folder(const std::filesystem::path& dir);
  // The current weights in fp32 on the host, parameter_specs order with padding (for tests).
  std::vector<float> master_weights_host() const;

  StepStats train_step(const TrainBatch& batch);
  // Per-token log-probs of batch under the current weights, aligned like batch (column 0 is 0).
  std::vector<float> logprobs(const TrainBatch& batch);

  // Freezes a copy of the current compute weights as the KL reference; it lives in its own
  // tag and is offloaded to host memory except while reference_logprobs() runs.
  void snapshot_reference();
  bool has_reference() const { return reference_.ptr != nullptr; }
  std::vector<float> reference_logprobs(const TrainBatch& batch);

  // Level-1-like sleep of the trainer's own memory: params and moments to the host backup,
  // gradients, compute copy and activations dropped; restore brings it back bit-exact.
  // keep_weights: only the optimizer state and gradients go (the weights stay for a sync);
  // call offload_state() again afterwards to move the weights as well.
  void offload_state(bool keep_weights = false);
  void restore_state();
  bool state_offloaded() const { return state_->offloaded(); }

  void save_checkpoint(const std::filesystem::path& path, const TrainProgress& progress) const;
  // Refuses (TrainError) a file that is corrupt or was written for another model; on success
  // the weights, moments and step are those of the checkpoint.
  TrainProgress load_checkpoint(const std::filesystem::path& path);
  uint64_t config_hash() const;

  std::vector<NamedTensor> export_weights(DType dtype) const { return state_->export_weights(dtype); }
  BucketPlan plan_buckets(DType dtype, uint64_t bucket_bytes) const {
    return state_->plan_buckets(dtype, bucket_bytes);
  }
  void pack_bucket(const BucketPlan& plan, size_t index, void* dst) const {
    state_->pack_bucket(plan, index, dst);
  }

  int64_t step() const { return step_; }
  const model::ModelConfig& config() const { return cfg_; }
  const TrainerOptions& options() const { return opts_; }
  TrainerOptions& mutable_options() { return opts_; }
  kernels::Ops& ops() const { return ops_; }
  TrainState& state() { return *state_; }
  model::TrainingModel& model() { return *model_; }
  // Compute-dtype weights bound over the compute copy (what forward uses).
  model::ModelWeights compute_weights() const;
  // A device buffer for `bytes` of logits (act dtype), inside the activations allocation.
  void* logits_buffer(size_t bytes);

 private:
  // Forward of rows [r0, r0 + n) of batch; leaves log-probs [n, cols - 1] on the host.
  void forward_rows(const TrainBatch& b, int r0, int n, std::vector<float>& lp_host);
  std::vector<float> forward_all(const TrainBatch& b);

  model::ModelConfig cfg_;
  TrainerOptions opts_;
  kernels::Ops& ops_;
  allocator::Pool& pool_;
  std::unique_ptr<TrainState> state_;
  std::unique_ptr<model::TrainingModel> model_;
  allocator::Allocation rope_, activations_, io_, reference_, logits_;
  int32_t* tokens_dev_ = nullptr;
  float* lp_dev_ = nullptr;
  float* dlp_dev_ = nullptr;
  int64_t step_ = 0;
};

}  // namespace siesta::train
