// The built-in TrainerBackend: GRPO and SFT steps of siesta's own trainer on a task.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "siesta/actors/trainer_backend.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/train/batch.hpp"
#include "siesta/train/loss.hpp"
#include "siesta/train/task.hpp"
#include "siesta/train/tokenizer.hpp"
#include "siesta/train/trainer.hpp"

namespace siesta::actors {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TrainReport report_of(const train::StepStats& s, double seconds) {
  return TrainReport{s.step, s.loss, s.grad_norm, s.lr, s.tokens, seconds};
}

class BuiltinTrainer final : public TrainerBackend {
 public:
  BuiltinTrainer(train::Trainer& t, allocator::Pool& pool, const train::Task& task,
                 BuiltinTrainerOptions o)
      : t_(t), pool_(pool), task_(task), opts_(o) {}

  void begin_stage(const TrainStage& s) override {
    if (s.kind != "sft" && s.kind != "grpo")
      throw std::invalid_argument("trainer stage '" + s.kind + "' (allowed: sft, grpo)");
    if (s.group_size < 1) throw std::invalid_argument("GRPO group_size must be >= 1");
    auto& o = t_.mutable_options();
    // The schedule counts optimizer steps from the trainer's start; a stage begins where the
    // trainer is now.
    const int64_t base = s.start_step >= 0 ? s.start_step : t_.step();
    o.lr = train::LrSchedule{s.lr, s.min_lr, s.warmup_steps, s.total_steps, base};
    o.grpo.clip_low = o.grpo.clip_high = s.clip_eps;
    o.grpo.kl_coef = s.kl_coef;
    o.validate();
    if (s.kl_coef > 0 && !t_.has_reference()) t_.snapshot_reference();
    stage_ = s;
  }

  TrainReport train(const RolloutBatch& batch) override {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<Rollout> sorted = batch.rollouts;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const Rollout& a, const Rollout& b) { return a.prompt_index < b.prompt_index; });
    std::vector<double> rewards;
    std::vector<train::Rollout> rs;
    for (const auto& r : sorted) {
      rewards.push_back(r.reward);
      rs.push_back(train::Rollout{r.prompt_tokens, r.tokens, r.logprobs, r.reward});
    }
    train::AdvantageOptions ao;
    ao.scale_by_std = opts_.scale_advantages_by_std;
    auto adv = train::group_advantages(rewards, stage_.group_size, ao);
    auto b = train::make_grpo_batch(rs, adv, tok_);
    auto stats = t_.train_step(b);
    return report_of(stats, seconds_since(t0));
  }

  TrainReport sft(int64_t step) override {
    auto t0 = std::chrono::steady_clock::now();
    const auto n = uint64_t(std::max(1, stage_.sft_examples_per_step));
    std::vector<train::TaskExample> ex;
    for (uint64_t i = 0; i < n; ++i) ex.push_back(task_.train_example(uint64_t(step) * n + i));
    auto stats = t_.train_step(train::make_sft_batch(ex, tok_));
    return report_of(stats, seconds_since(t0));
  }

  uint64_t offload(bool keep_weights) override {
    const uint64_t before = resident_bytes();
    t_.offload_state(keep_weights);
    return before - std::min(before, resident_bytes());
  }

  uint64_t restore() override {
    const uint64_t before = resident_bytes();
    t_.restore_state();
    const uint64_t after = resident_bytes();
    return after - std::min(before, after);
  }

  std::vector<comm::NamedTensor> weights() override {
    compute_ = t_.compute_weights();
    std::vector<comm::NamedTensor> out;
    for (const auto& n : compute_.named()) out.push_back(comm::NamedTensor{n.name, n.view});
    return out;
  }

  std::string checkpoint(const std::string& folder) override {
    std::filesystem::create_directories(folder);
    auto path = std::filesystem::path(folder) / "trainer.ckpt";
    with_state_on_device([&] { t_.save_checkpoint(path, train::TrainProgress{}); });
    return path.string();
  }

  int64_t resume(const std::string& file) override {
    with_state_on_device([&] { t_.load_checkpoint(file); });
    return t_.step();
  }

 private:
  // Runs f with the whole state on the device, then offloads again what was offloaded before.
  template <class F>
  void with_state_on_device(F f) {
    const bool was_offloaded = t_.state_offloaded();
    const bool weights_kept = was_offloaded && t_.state().weights_resident();
    if (was_offloaded) t_.restore_state();
    f();
    if (was_offloaded) t_.offload_state(weights_kept);
  }

  // Device bytes the trainer's own tags have mapped now.
  uint64_t resident_bytes() const {
    uint64_t b = 0;
    for (const auto& ts : pool_.stats().tags)
      if (ts.tag.starts_with("train_") || ts.tag == "optimizer" || ts.tag == "activations")
        b += ts.mapped_bytes;
    return b;
  }

  train::Trainer& t_;
  allocator::Pool& pool_;
  const train::Task& task_;
  BuiltinTrainerOptions opts_;
  TrainStage stage_;
  train::ByteTokenizer tok_;
  model::ModelWeights compute_;
};

}  // namespace

std::unique_ptr<TrainerBackend> make_builtin_trainer(train::Trainer& trainer, allocator::Pool& pool,
                                                     const train::Task& task,
                                                     BuiltinTrainerOptions opts) {
  return std::make_unique<BuiltinTrainer>(trainer, pool, task, opts);
}

}  // namespace siesta::actors
