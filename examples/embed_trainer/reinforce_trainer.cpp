#include "reinforce_trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string_view>

#include "siesta/model/folder.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"

namespace embed_example {

using namespace siesta;
namespace fs = std::filesystem;

namespace {

// Our tags in the application's own pool. Parameters (with the rope table) and Adam moments are
// offloaded with their content; the rest is rebuilt by every step or by restore().
const char* const kParams = "app_params";
const char* const kCompute = "app_compute";
const char* const kGrads = "app_grads";
const char* const kMoments = "app_moments";
const char* const kActivations = "app_activations";

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace

std::vector<float> leave_one_out_advantages(const std::vector<int32_t>& prompt_index,
                                            const std::vector<float>& reward) {
  if (prompt_index.size() != reward.size())
    throw std::invalid_argument("leave_one_out_advantages: " + std::to_string(prompt_index.size()) +
                                " prompt indices but " + std::to_string(reward.size()) + " rewards");
  std::map<int32_t, std::pair<double, int>> sum_count;
  for (size_t i = 0; i < reward.size(); ++i) {
    auto& [s, n] = sum_count[prompt_index[i]];
    s += reward[i];
    ++n;
  }
  std::vector<float> adv(reward.size(), 0.f);
  for (size_t i = 0; i < reward.size(); ++i) {
    auto [s, n] = sum_count[prompt_index[i]];
    if (n > 1) adv[i] = float(reward[i] - (s - reward[i]) / (n - 1));
  }
  return adv;
}

// One micro-batch: B rows padded to T tokens; row b trains columns [prompt_len[b], len[b]).
struct ReinforceTrainer::Chunk {
  int B = 0, T = 0;
  std::vector<int32_t> tokens;
  std::vector<int> prompt_len, len;
  std::vector<float> adv;
};

ReinforceTrainer::ReinforceTrainer(ReinforceOptions o) : opts_(std::move(o)) {
  cfg_ = model::resolve_model_config(opts_.model);
  if (opts_.micro_batch_rows < 1 || opts_.max_seq_len < 2 || opts_.max_seq_len > cfg_.max_position_embeddings)
    throw std::invalid_argument("REINFORCE trainer: micro_batch_rows must be >= 1 and max_seq_len in [2, " +
                                std::to_string(cfg_.max_position_embeddings) + "] (got " +
                                std::to_string(opts_.micro_batch_rows) + ", " +
                                std::to_string(opts_.max_seq_len) + ")");
  ops_ = kernels::make_ops(opts_.device);
  allocator::PoolOptions po;
  po.device = opts_.device;
  po.chunk_bytes = 2ull << 20;   // a small model: fine-grained chunks keep the mapped bytes exact
  pool_ = allocator::Pool::create(po);

  const DType act = ops_->act_dtype();
  numel_ = model::weights_numel(cfg_);
  const size_t f32_bytes = model::weights_bytes(cfg_, DType::F32);
  params_ = pool_->allocate(f32_bytes, kParams, "app.params");
  const std::vector<float> rope = model::rope_table(cfg_);
  rope_ = pool_->allocate(rope.size() * 4, kParams, "app.rope");
  separate_compute_ = act != DType::F32;
  if (separate_compute_) compute_ = pool_->allocate(model::weights_bytes(cfg_, act), kCompute, "app.compute");
  grads_ = pool_->allocate(f32_bytes, kGrads, "app.grads");
  moments_ = pool_->allocate(2 * f32_bytes, kMoments, "app.adam_moments");
  const int rows = opts_.micro_batch_rows, seq = opts_.max_seq_len;
  const size_t act_bytes = model::TrainingModel::activation_bytes(cfg_, act, rows, seq);
  activations_ = pool_->allocate(act_bytes, kActivations, "app.activations");
  const size_t io_each = align256(size_t(rows) * seq * 4);
  io_ = pool_->allocate(3 * io_each + 256, kActivations, "app.io");
  tokens_dev_ = static_cast<int32_t*>(io_.ptr);
  lp_dev_ = reinterpret_cast<float*>(static_cast<std::byte*>(io_.ptr) + io_each);
  dlp_dev_ = reinterpret_cast<float*>(static_cast<std::byte*>(io_.ptr) + 2 * io_each);
  norm_dev_ = reinterpret_cast<float*>(static_cast<std::byte*>(io_.ptr) + 3 * io_each);

  // Padding between tensors must stay zero for whole-buffer Adam (model/weights.hpp).
  ops_->fill_zero(params_.ptr, f32_bytes);
  ops_->fill_zero(grads_.ptr, f32_bytes);
  ops_->fill_zero(moments_.ptr, 2 * f32_bytes);
  ops_->copy_to_device(rope_.ptr, rope.data(), rope.size() * 4);
  const auto params = model::bind_weights(cfg_, params_.ptr, DType::F32, opts_.device);
  if (fs::is_directory(opts_.model)) {
    model::load_model_folder(opts_.model).load_into(params, *ops_);
  } else {
    model::HostWeights host(cfg_, DType::F32);
    model::init_random_weights(cfg_, host.weights(), opts_.seed);
    ops_->copy_to_device(params_.ptr, host.data(), host.bytes());
  }
  void* compute = separate_compute_ ? compute_.ptr : params_.ptr;
  if (separate_compute_) ops_->convert(compute, act, params_.ptr, DType::F32, numel_);
  model_ = std::make_unique<model::TrainingModel>(
      cfg_, *ops_, model::bind_weights(cfg_, compute, act, opts_.device),
      model::bind_weights(cfg_, grads_.ptr, DType::F32, opts_.device),
      static_cast<const float*>(rope_.ptr), activations_.ptr, act_bytes, rows, seq);
  ops_->synchronize();
}

ReinforceTrainer::~ReinforceTrainer() {
  model_.reset();
  // The pool frees whatever is still allocated (awake or asleep) when it goes.
}

void ReinforceTrainer::begin_stage(const actors::TrainStage& stage) {
  if (stage.kind != "grpo")
    throw std::invalid_argument("REINFORCE trainer: stage kind '" + stage.kind +
                                "' is not offered (allowed: grpo)");
  if (!(stage.lr > 0)) throw std::invalid_argument("REINFORCE trainer: lr must be > 0");
  lr_ = stage.lr;   // constant: this trainer keeps no schedule
}

actors::TrainReport ReinforceTrainer::train(const actors::RolloutBatch& batch) {
  const auto t0 = std::chrono::steady_clock::now();
  if (pool_->is_sleeping(kParams) || pool_->is_sleeping(kGrads))
    throw std::runtime_error("REINFORCE trainer: train() while the state is offloaded (restore() first)");
  std::vector<int32_t> prompt_index;
  std::vector<float> reward;
  for (const auto& r : batch.rollouts) {
    prompt_index.push_back(r.prompt_index);
    reward.push_back(r.reward);
  }
  const auto adv = leave_one_out_advantages(prompt_index, reward);

  // Only rollouts with a non-zero advantage carry gradient; longest first so that each
  // micro-batch pads little.
  std::vector<size_t> order;
  int64_t tokens = 0;
  for (size_t i = 0; i < batch.rollouts.size(); ++i) {
    const auto& r = batch.rollouts[i];
    if (adv[i] == 0.f || r.tokens.empty()) continue;
    const size_t len = r.prompt_tokens.size() + r.tokens.size();
    if (r.prompt_tokens.empty() || len > size_t(opts_.max_seq_len))
      throw std::invalid_argument("REINFORCE trainer: rollout " + std::to_string(i) + " has " +
                                  std::to_string(r.prompt_tokens.size()) + " prompt + " +
                                  std::to_string(r.tokens.size()) +
                                  " completion tokens; allowed: a prompt of >= 1 token and at most " +
                                  std::to_string(opts_.max_seq_len) + " in all (max_seq_len)");
    order.push_back(i);
    tokens += int64_t(r.tokens.size());
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = batch.rollouts[a];
    const auto& y = batch.rollouts[b];
    return x.prompt_tokens.size() + x.tokens.size() > y.prompt_tokens.size() + y.tokens.size();
  });

  actors::TrainReport rep;
  rep.lr = lr_;
  rep.tokens = tokens;
  if (order.empty()) {   // every group scored alike: no signal, no update
    rep.step = step_;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  const int64_t f32_bytes = numel_ * 4;
  ops_->fill_zero(grads_.ptr, size_t(f32_bytes));
  double loss = 0;
  for (size_t c0 = 0; c0 < order.size(); c0 += size_t(opts_.micro_batch_rows)) {
    Chunk c;
    c.B = int(std::min(order.size() - c0, size_t(opts_.micro_batch_rows)));
    for (int b = 0; b < c.B; ++b) {
      const auto& r = batch.rollouts[order[c0 + size_t(b)]];
      c.T = std::max(c.T, int(r.prompt_tokens.size() + r.tokens.size()));
    }
    c.tokens.assign(size_t(c.B) * size_t(c.T), 0);   // padding is never trained
    for (int b = 0; b < c.B; ++b) {
      const size_t i = order[c0 + size_t(b)];
      const auto& r = batch.rollouts[i];
      auto* row = c.tokens.data() + size_t(b) * size_t(c.T);
      std::copy(r.prompt_tokens.begin(), r.prompt_tokens.end(), row);
      std::copy(r.tokens.begin(), r.tokens.end(), row + r.prompt_tokens.size());
      c.prompt_len.push_back(int(r.prompt_tokens.size()));
      c.len.push_back(int(r.prompt_tokens.size() + r.tokens.size()));
      c.adv.push_back(adv[i]);
    }
    train_chunk(c, double(tokens), loss);
  }

  // Global-norm clipping, then one Adam step (no weight decay) over the whole fp32 buffer.
  ops_->fill_zero(norm_dev_, 4);
  ops_->sum_squares(norm_dev_, static_cast<const float*>(grads_.ptr), numel_);
  float sq = 0;
  ops_->copy_to_host(&sq, norm_dev_, 4);
  ops_->synchronize();
  const double norm = std::sqrt(double(sq));
  if (opts_.max_grad_norm > 0 && norm > opts_.max_grad_norm)
    ops_->scale(static_cast<float*>(grads_.ptr), numel_, float(opts_.max_grad_norm / norm));
  ++step_;
  auto* m = static_cast<float*>(moments_.ptr);
  ops_->adamw_step(static_cast<float*>(params_.ptr), static_cast<const float*>(grads_.ptr), m,
                   m + numel_, numel_,
                   kernels::Ops::AdamW{float(lr_), opts_.beta1, opts_.beta2, opts_.eps, 0.f, step_});
  if (separate_compute_)
    ops_->convert(compute_.ptr, ops_->act_dtype(), params_.ptr, DType::F32, numel_);
  ops_->synchronize();

  rep.step = step_;
  rep.loss = loss;
  rep.grad_norm = norm;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

// loss = -(1/N) sum_rows A_row * sum_{completion tokens} log p(token); N = trained tokens.
void ReinforceTrainer::train_chunk(const Chunk& c, double n_tokens, double& loss) {
  const size_t cols = size_t(c.T - 1);   // log-prob t is of token t + 1
  ops_->copy_to_device(tokens_dev_, c.tokens.data(), c.tokens.size() * 4);
  model_->forward(tokens_dev_, c.B, c.T, lp_dev_, nullptr);
  std::vector<float> lp(size_t(c.B) * cols), dlp(lp.size(), 0.f);
  ops_->copy_to_host(lp.data(), lp_dev_, lp.size() * 4);
  ops_->synchronize();
  for (int b = 0; b < c.B; ++b)
    for (int t = c.prompt_len[size_t(b)]; t < c.len[size_t(b)]; ++t) {
      const size_t k = size_t(b) * cols + size_t(t - 1);
      loss -= double(c.adv[size_t(b)]) * lp[k] / n_tokens;
      dlp[k] = float(-double(c.adv[size_t(b)]) / n_tokens);
    }
  ops_->copy_to_device(dlp_dev_, dlp.data(), dlp.size() * 4);
  model_->backward(dlp_dev_);
}

actors::TrainReport ReinforceTrainer::sft(int64_t) {
  throw std::invalid_argument("REINFORCE trainer: supervised steps are not offered (allowed: grpo steps)");
}

uint64_t ReinforceTrainer::mapped_bytes() const {
  uint64_t b = 0;
  for (const auto& t : pool_->stats().tags) b += t.mapped_bytes;
  return b;
}

uint64_t ReinforceTrainer::offload(bool keep_weights) {
  const uint64_t before = mapped_bytes();
  ops_->synchronize();
  auto sleep = [&](std::vector<std::string> tags, allocator::SleepMode mode) {
    std::erase_if(tags, [&](const std::string& t) { return pool_->is_sleeping(t); });
    if (!tags.empty()) pool_->sleep(tags, mode);
  };
  // The weight sync reads the fp32 master parameters, so the compute copy can always go.
  std::vector<std::string> discard = {kGrads, kActivations};
  if (separate_compute_) discard.push_back(kCompute);
  sleep(discard, allocator::SleepMode::Discard);
  std::vector<std::string> offload = {kMoments};
  if (!keep_weights) offload.push_back(kParams);
  sleep(offload, allocator::SleepMode::Offload);
  return before - std::min(before, mapped_bytes());
}

uint64_t ReinforceTrainer::restore() {
  const uint64_t before = mapped_bytes();
  std::vector<std::string> asleep;
  for (const char* t : {kParams, kCompute, kGrads, kMoments, kActivations})
    if ((std::string_view(t) != kCompute || separate_compute_) && pool_->is_sleeping(t))
      asleep.push_back(t);
  if (asleep.empty()) return 0;
  pool_->wake(asleep);
  if (separate_compute_ && std::find(asleep.begin(), asleep.end(), kCompute) != asleep.end())
    ops_->convert(compute_.ptr, ops_->act_dtype(), params_.ptr, DType::F32, numel_);
  ops_->synchronize();
  return mapped_bytes() - std::min(before, mapped_bytes());
}

std::vector<comm::NamedTensor> ReinforceTrainer::weights() {
  if (pool_->is_sleeping(kParams))
    throw std::runtime_error("REINFORCE trainer: weights() while the parameters are offloaded");
  std::vector<comm::NamedTensor> out;
  // Named: named() refers into the ModelWeights, which a temporary would not keep alive.
  const model::ModelWeights params = model::bind_weights(cfg_, params_.ptr, DType::F32, opts_.device);
  for (const auto& t : params.named())
    out.push_back(comm::NamedTensor{t.name, t.view});
  return out;
}

// Checkpoints and resumes run between steps, when the state may be offloaded: wake it for the
// call and put back to sleep what was asleep.
template <class F>
void ReinforceTrainer::with_state_awake(F&& f) {
  const bool params_asleep = pool_->is_sleeping(kParams);
  const bool moments_asleep = pool_->is_sleeping(kMoments);
  restore();
  auto back_to_sleep = [&] {
    if (params_asleep) offload(false);
    else if (moments_asleep) offload(true);
  };
  try {
    f();
  } catch (...) {
    back_to_sleep();
    throw;
  }
  back_to_sleep();
}

std::string ReinforceTrainer::checkpoint(const std::string& folder) {
  // An HF folder (config.json + model.safetensors) that siesta and other tools load, written
  // next to its final place and renamed, so a crash never leaves half a checkpoint.
  const fs::path dir = fs::path(folder) / "policy", tmp = fs::path(folder) / "policy.tmp";
  with_state_awake([&] {
    fs::create_directories(folder);
    fs::remove_all(tmp);
    model::save_model_folder(tmp, cfg_, model::bind_weights(cfg_, params_.ptr, DType::F32, opts_.device),
                             0, ops_.get());
    std::ofstream(tmp / "trainer_steps.txt") << step_ << "\n";
    fs::remove_all(dir);
    fs::rename(tmp, dir);
  });
  return dir.string();
}

int64_t ReinforceTrainer::resume(const std::string& file) {
  with_state_awake([&] {
    model::load_model_folder(file).load_into(
        model::bind_weights(cfg_, params_.ptr, DType::F32, opts_.device), *ops_);
    int64_t steps = -1;
    std::ifstream(fs::path(file) / "trainer_steps.txt") >> steps;
    if (steps < 0)
      throw std::runtime_error("REINFORCE trainer: " + file + " has no trainer_steps.txt (not written by checkpoint())");
    step_ = steps;
    // The checkpoint holds the policy only: Adam starts afresh from it.
    ops_->fill_zero(moments_.ptr, size_t(numel_) * 8);
    if (separate_compute_) ops_->convert(compute_.ptr, ops_->act_dtype(), params_.ptr, DType::F32, numel_);
    ops_->synchronize();
  });
  return step_;
}

std::vector<float> ReinforceTrainer::params_host() {
  std::vector<float> out(static_cast<size_t>(numel_));
  with_state_awake([&] {
    ops_->copy_to_host(out.data(), params_.ptr, out.size() * 4);
    ops_->synchronize();
  });
  return out;
}

}  // namespace embed_example
