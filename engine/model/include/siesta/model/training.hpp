// The training forward/backward pass over kernels::Ops (CPU fp32 and CUDA bf16 share it):
// forward computes, for every sequence, the log-prob of token t+1 given tokens <= t (and the
// entropy of that distribution); backward turns d(loss)/d(logprob) into fp32 gradients of every
// parameter, biases, norms, embeddings and the tied lm_head included.
#pragma once

#include <vector>

#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/weights.hpp"

namespace siesta::model {

class TrainingModel {
 public:
  // Activations kept for backward for batches of up to max_batch x max_seq tokens, including
  // the logits and their gradient ([tokens, vocab] each, the largest item for big vocabularies).
  static size_t activation_bytes(const ModelConfig& cfg, DType act, int max_batch, int max_seq);

  // weights: act dtype (the compute copy), grads: F32 buffer bound with the same config (see
  // weights.hpp), both on ops' device. rope_cos_sin_dev: rope_table(cfg) on the device.
  // activations: activation_bytes(cfg, ops.act_dtype(), max_batch, max_seq) bytes.
  TrainingModel(const ModelConfig& cfg, kernels::Ops& ops, const ModelWeights& weights,
                const ModelWeights& grads, const float* rope_cos_sin_dev, void* activations,
                size_t activation_bytes, int max_batch, int max_seq);

  // tokens_dev [B*T] (B sequences of T tokens, row-major; must stay valid until backward).
  // logprob_dev [B*(T-1)] F32: row b*(T-1)+t = log p(tokens[b, t+1] | tokens[b, <= t]).
  // entropy_dev: same shape, or nullptr.
  void forward(const int32_t* tokens_dev, int B, int T, float* logprob_dev, float* entropy_dev);

  // dlogprob_dev [B*(T-1)] F32 = d(loss)/d(logprob) for the last forward. Gradients are
  // ADDED into grads (zero them at the start of an accumulation window). Entropy is treated as
  // a metric: it has no gradient path.
  void backward(const float* dlogprob_dev);

  // A plain contiguous forward: logits_out [B*T, vocab] in act dtype. Overwrites the saved
  // activations (call forward again before backward).
  void logits(const int32_t* tokens_dev, int B, int T, void* logits_out);

  void set_weights(const ModelWeights& weights) { w_ = weights; }
  void set_grads(const ModelWeights& grads) { g_ = grads; }
  const ModelConfig& config() const { return cfg_; }

 private:
  struct LayerActs {
    void *x_in, *xn1, *q, *k, *v, *attn, *x_mid, *xn2, *gate, *up, *h;
    float *rstd1, *rstd2, *lse;
  };
  void trunk(const int32_t* tokens_dev, int B, int T);  // embeddings .. final norm
  void check_batch(int B, int T, const char* what) const;
  // Lays the activation buffer out; measures only when base is null (into may be null then).
  static size_t carve(const ModelConfig& cfg, DType act, int64_t max_tokens, std::byte* base,
                      TrainingModel* into);

  ModelConfig cfg_;
  kernels::Ops& ops_;
  ModelWeights w_, g_;
  const float* rope_;
  int max_batch_, max_seq_;
  std::vector<LayerActs> acts_;
  void *x_final_, *xn_final_, *logits_, *dlogits_;
  float* rstd_final_;
  int32_t* positions_;
  // backward scratch (act dtype)
  void *dx_, *dxn_, *dattn_, *dq_, *dk_, *dv_, *dh_, *dgate_, *dup_;
  std::vector<int32_t> positions_host_;
  const int32_t* tokens_ = nullptr;
  int B_ = 0, T_ = 0;
};

}  // namespace siesta::model
