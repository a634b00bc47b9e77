// The trainer: micro-batched forward/backward through model::TrainingModel, host-side GRPO /
// SFT objectives, global-norm clipping and AdamW through kernels::Ops.
#include "siesta/train/trainer.hpp"

#include <algorithm>
#include <cmath>

#include "siesta/model/folder.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/train/error.hpp"

namespace siesta::train {
namespace {

std::vector<ParamTensor> param_tensors(const model::ModelConfig& cfg, Device dev) {
  // Binding at a null base yields the offsets without touching memory.
  model::ModelWeights w = model::bind_weights(cfg, nullptr, DType::F32, dev);
  std::vector<ParamTensor> out;
  for (const auto& t : w.named()) out.push_back({t.name, t.view.shape, t.offset_elems});
  return out;
}

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Token-aligned [rows, cols] -> the model's log-prob layout [rows, cols - 1] (entry t is about
// token t + 1), for rows [r0, r0 + n).
std::vector<float> shift_rows(const std::vector<float>& v, int cols, int r0, int n) {
  std::vector<float> out(size_t(n) * (cols - 1));
  for (int r = 0; r < n; ++r)
    std::copy(v.begin() + size_t(r0 + r) * cols + 1, v.begin() + size_t(r0 + r + 1) * cols,
              out.begin() + size_t(r) * (cols - 1));
  return out;
}

}  // namespace

void TrainerOptions::validate() const {
  lr.validate();
  if (micro_batch_rows < 1)
    throw TrainError("trainer: micro_batch_rows must be >= 1 (got " +
                     std::to_string(micro_batch_rows) + ")");
  if (max_seq_len < 2)
    throw TrainError("trainer: max_seq_len must be >= 2 (got " + std::to_string(max_seq_len) + ")");
  if (max_grad_norm < 0) throw TrainError("trainer: max_grad_norm must be >= 0 (0 disables)");
  if (!(adamw.beta1 >= 0 && adamw.beta1 < 1 && adamw.beta2 >= 0 && adamw.beta2 < 1))
    throw TrainError("trainer: AdamW betas must lie in [0, 1)");
  if (!(adamw.eps > 0) || adamw.weight_decay < 0)
    throw TrainError("trainer: AdamW eps must be > 0 and weight_decay >= 0");
}

Trainer::Trainer(const model::ModelConfig& cfg, TrainerOptions options, kernels::Ops& ops,
                 allocator::Pool& pool)
    : cfg_(cfg), opts_(std::move(options)), ops_(ops), pool_(pool) {
  cfg_.validate();
  opts_.validate();
  if (opts_.max_seq_len > cfg_.max_position_embeddings)
    throw TrainError("trainer: max_seq_len " + std::to_string(opts_.max_seq_len) +
                     " exceeds the model's max_position_embeddings " +
                     std::to_string(cfg_.max_position_embeddings));
  state_ = std::make_unique<TrainState>(ops_, pool_, param_tensors(cfg_, ops_.device()),
                                        model::weights_numel(cfg_));
  const std::vector<float> rope = model::rope_table(cfg_);
  // The rope table is constant; it sleeps with the parameters (Offload) so it survives.
  rope_ = pool_.allocate(rope.size() * 4, kTagParams, "train.rope_cos_sin");
  ops_.copy_to_device(rope_.ptr, rope.data(), rope.size() * 4);

  const int rows = opts_.micro_batch_rows, seq = opts_.max_seq_len;
  const size_t act = model::TrainingModel::activation_bytes(cfg_, ops_.act_dtype(), rows, seq);
  activations_ = pool_.allocate(act, kTagActivations, "train.activations");
  const size_t tok_bytes = align_up(size_t(rows) * seq * 4, 256);
  io_ = pool_.allocate(3 * tok_bytes, kTagActivations, "train.io");
  tokens_dev_ = static_cast<int32_t*>(io_.ptr);
  lp_dev_ = reinterpret_cast<float*>(static_cast<char*>(io_.ptr) + tok_bytes);
  dlp_dev_ = reinterpret_cast<float*>(static_cast<char*>(io_.ptr) + 2 * tok_bytes);

  const model::ModelWeights grads =
      model::bind_weights(cfg_, state_->grads(), DType::F32, ops_.device());
  model_ = std::make_unique<model::TrainingModel>(cfg_, ops_, compute_weights(), grads,
                                                  static_cast<const float*>(rope_.ptr),
                                                  activations_.ptr, act, rows, seq);
  ops_.synchronize();
}

Trainer::~Trainer() {
  try {
    if (state_ && state_->offloaded()) restore_state();
    model_.reset();
    for (auto* a : {&rope_, &activations_, &io_, &reference_, &logits_})
      if (a->ptr) pool_.free(*a);
  } catch (...) {
    // Destructors must not throw; the pool reclaims what is left when it goes.
  }
}

model::ModelWeights Trainer::compute_weights() const {
  return model::bind_weights(cfg_, state_->compute(), ops_.act_dtype(), ops_.device());
}

void Trainer::init_random(uint64_t seed, float std) {
  model::HostWeights host(cfg_, DType::F32);
  model::init_random_weights(cfg_, host.weights(), seed, std);
  state_->load_params(static_cast<const float*>(host.data()), state_->numel());
  step_ = 0;
}

void Trainer::load_model_folder(const std::filesystem::path& dir) {
  model::ModelFolder folder = model::load_model_folder(dir);
  if (folder.config().to_json_text() != cfg_.to_json_text())
    throw TrainError("trainer: model folder '" + dir.string() + "' has config " +
                     folder.config().to_json_text() + ", the trainer was built for " +
                     cfg_.to_json_text());
  folder.load_into(model::bind_weights(cfg_, state_->params(), DType::F32, ops_.device()), ops_);
  state_->reset_moments();
  state_->refresh_compute_copy();
  ops_.synchronize();
  step_ = 0;
}

std::vector<float> Trainer::master_weights_host() const {
  std::vector<float> out(size_t(state_->numel()));
  state_->params_to_host(out.data(), state_->numel());
  ops_.synchronize();
  return out;
}

void Trainer::forward_rows(const TrainBatch& b, int r0, int n, std::vector<float>& lp_host) {
  const int T = b.cols;
  ops_.copy_to_device(tokens_dev_, b.tokens.data() + size_t(r0) * T, size_t(n) * T * 4);
  model_->forward(tokens_dev_, n, T, lp_dev_, nullptr);
  lp_host.resize(size_t(n) * (T - 1));
  ops_.copy_to_host(lp_host.data(), lp_dev_, lp_host.size() * 4);
  ops_.synchronize();
}

std::vector<float> Trainer::forward_all(const TrainBatch& b) {
  b.validate(cfg_.vocab_size);
  if (b.cols > opts_.max_seq_len)
    throw TrainError("trainer: batch rows hold " + std::to_string(b.cols) +
                     " tokens; max_seq_len is " + std::to_string(opts_.max_seq_len));
  if (state_->offloaded()) throw TrainError("trainer: state is offloaded (call restore_state)");
  std::vector<float> out(size_t(b.rows) * b.cols, 0.f), lp;
  for (int r0 = 0; r0 < b.rows; r0 += opts_.micro_batch_rows) {
    const int n = std::min(opts_.micro_batch_rows, b.rows - r0);
    forward_rows(b, r0, n, lp);
    for (int r = 0; r < n; ++r)
      std::copy(lp.begin() + size_t(r) * (b.cols - 1), lp.begin() + size_t(r + 1) * (b.cols - 1),
                out.begin() + size_t(r0 + r) * b.cols + 1);
  }
  return out;
}

std::vector<float> Trainer::logprobs(const TrainBatch& b) { return forward_all(b); }

StepStats Trainer::train_step(const TrainBatch& batch) {
  batch.validate(cfg_.vocab_size);
  if (batch.cols > opts_.max_seq_len)
    throw TrainError("trainer: batch rows hold " + std::to_string(batch.cols) +
                     " tokens; max_seq_len is " + std::to_string(opts_.max_seq_len));
  if (state_->offloaded()) throw TrainError("trainer: state is offloaded (call restore_state)");
  const bool grpo = batch.objective == Objective::Grpo;
  std::vector<float> ref_tok = grpo ? batch.ref_logprobs : std::vector<float>{};
  if (grpo && opts_.grpo.kl_coef > 0 && ref_tok.empty()) {
    if (!has_reference())
      throw TrainError("trainer: kl_coef " + std::to_string(opts_.grpo.kl_coef) +
                       " needs reference log-probs: put them in the batch or call "
                       "snapshot_reference()");
    ref_tok = reference_logprobs(batch);
  }

  const int T = batch.cols;
  const LossNorm norm = loss_norm_of(batch.rows, T, batch.mask.data());
  StepStats st;
  double ratio_sum = 0, clipped = 0;
  state_->zero_grads();
  std::vector<float> lp, dlp;
  for (int r0 = 0; r0 < batch.rows; r0 += opts_.micro_batch_rows) {
    const int n = std::min(opts_.micro_batch_rows, batch.rows - r0);
    forward_rows(batch, r0, n, lp);
    const std::vector<float> mask = shift_rows(batch.mask, T, r0, n);
    dlp.assign(lp.size(), 0.f);
    LossStats ls;
    if (grpo) {
      const std::vector<float> old = shift_rows(batch.old_logprobs, T, r0, n);
      const std::vector<float> ref =
          ref_tok.empty() ? std::vector<float>{} : shift_rows(ref_tok, T, r0, n);
      PolicyLossInput in{n, T - 1, lp.data(), old.data(), ref.empty() ? nullptr : ref.data(),
                         batch.advantages.data() + r0, mask.data()};
      ls = grpo_loss(in, opts_.grpo, norm, dlp.data());
    } else {
      ls = sft_loss(n, T - 1, lp.data(), mask.data(), opts_.sft_aggregation, norm, dlp.data());
    }
    st.details.loss += ls.loss;
    st.details.policy_loss += ls.policy_loss;
    st.details.kl += ls.kl;
    st.details.tokens += ls.tokens;
    ratio_sum += ls.mean_ratio * double(ls.tokens);
    clipped += ls.clip_fraction * double(ls.tokens);
    ops_.copy_to_device(dlp_dev_, dlp.data(), dlp.size() * 4);
    model_->backward(dlp_dev_);
  }
  if (st.details.tokens) {
    st.details.mean_ratio = ratio_sum / double(st.details.tokens);
    st.details.clip_fraction = clipped / double(st.details.tokens);
  }

  st.grad_norm = state_->grad_norm();
  if (!std::isfinite(st.grad_norm))
    throw TrainError("trainer: gradient norm is " + std::to_string(st.grad_norm) + " at step " +
                     std::to_string(step_ + 1) + " (loss " + std::to_string(st.details.loss) +
                     "); the update was not applied");
  if (opts_.max_grad_norm > 0 && st.grad_norm > opts_.max_grad_norm) {
    st.clip_coef = opts_.max_grad_norm / (st.grad_norm + 1e-6);
    state_->scale_grads(float(st.clip_coef));
  }
  st.lr = opts_.lr.lr_at(step_);
  state_->adamw_update(st.lr, step_ + 1, opts_.adamw);
  ops_.synchronize();
  ++step_;
  st.step = step_;
  st.loss = st.details.loss;
  st.tokens = st.details.tokens;
  st.batch_tokens = int64_t(batch.rows) * batch.cols;
  return st;
}

void Trainer::snapshot_reference() {
  if (state_->offloaded()) throw TrainError("trainer: state is offloaded (call restore_state)");
  const size_t bytes = model::weights_bytes(cfg_, ops_.act_dtype());
  if (!reference_.ptr) reference_ = pool_.allocate(bytes, kTagReference, "train.reference");
  else if (pool_.is_sleeping(kTagReference)) pool_.wake({kTagReference});
  ops_.copy_on_device(reference_.ptr, state_->compute(), bytes);
  ops_.synchronize();
  pool_.sleep({kTagReference}, allocator::SleepMode::Offload);
}

std::vector<float> Trainer::reference_logprobs(const TrainBatch& b) {
  if (!reference_.ptr) throw TrainError("trainer: no reference (call snapshot_reference first)");
  pool_.wake({kTagReference});
  model_->set_weights(model::bind_weights(cfg_, reference_.ptr, ops_.act_dtype(), ops_.device()));
  std::vector<float> out;
  try {
    out = forward_all(b);
  } catch (...) {
    model_->set_weights(compute_weights());
    pool_.sleep({kTagReference}, allocator::SleepMode::Offload);
    throw;
  }
  model_->set_weights(compute_weights());
  pool_.sleep({kTagReference}, allocator::SleepMode::Offload);
  return out;
}

void Trainer::offload_state(bool keep_weights) {
  const bool first = !state_->offloaded();
  state_->offload(keep_weights);
  if (first) pool_.sleep({kTagActivations}, allocator::SleepMode::Discard);
}

void Trainer::restore_state() {
  if (!state_->offloaded()) return;
  pool_.wake({kTagActivations});
  state_->restore();
}

void* Trainer::logits_buffer(size_t bytes) {
  if (logits_.ptr && logits_.bytes >= bytes) return logits_.ptr;
  if (logits_.ptr) pool_.free(logits_);
  logits_ = pool_.allocate(bytes, kTagActivations, "train.logits");
  return logits_.ptr;
}

uint64_t Trainer::config_hash() const {
  uint64_t h = state_->layout_hash();
  for (unsigned char c : cfg_.to_json_text()) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void Trainer::save_checkpoint(const std::filesystem::path& path,
                              const TrainProgress& progress) const {
  CheckpointMeta meta{config_hash(), uint64_t(step_), progress.rng, progress.data_position,
                      progress.extra};
  write_checkpoint(path, meta, state_->checkpoint_sections());
}

TrainProgress Trainer::load_checkpoint(const std::filesystem::path& path) {
  CheckpointReader r(path);
  r.expect_config_hash(config_hash(), "model " + std::to_string(cfg_.num_hidden_layers) +
                                          " layers, hidden " + std::to_string(cfg_.hidden_size) +
                                          ", vocab " + std::to_string(cfg_.vocab_size));
  // Every checksum is checked before any byte reaches the live state.
  r.verify();
  state_->read_sections(r);
  step_ = int64_t(r.meta().step);
  return {r.meta().rng, r.meta().data_position, r.meta().extra};
}

}  // namespace siesta::train
