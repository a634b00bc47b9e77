// The training pass. Forward keeps, per layer, what backward needs (inputs of every matmul,
// norm statistics, attention log-sum-exp); backward walks the layers in reverse, with the
// residual stream's gradient in dx_, accumulating fp32 parameter gradients.
#include "siesta/model/training.hpp"

#include "layers.hpp"
#include "siesta/model/inference.hpp"

namespace siesta::model {

size_t TrainingModel::carve(const ModelConfig& c, DType act, int64_t max_tokens, std::byte* base,
                            TrainingModel* into) {
  detail::Carver cv{base};
  const size_t es = dtype_size(act), n = size_t(max_tokens);
  const size_t d = size_t(c.hidden_size), inter = size_t(c.intermediate_size);
  const size_t qd = size_t(c.num_attention_heads) * c.head_dim;
  const size_t kvd = size_t(c.num_key_value_heads) * c.head_dim;
  const size_t V = size_t(c.vocab_size);
  std::vector<LayerActs> acts(size_t(c.num_hidden_layers));
  for (auto& a : acts) {
    a.x_in = cv.take(n * d * es);
    a.xn1 = cv.take(n * d * es);
    a.q = cv.take(n * qd * es);
    a.k = cv.take(n * kvd * es);
    a.v = cv.take(n * kvd * es);
    a.attn = cv.take(n * qd * es);
    a.x_mid = cv.take(n * d * es);
    a.xn2 = cv.take(n * d * es);
    a.gate = cv.take(n * inter * es);
    a.up = cv.take(n * inter * es);
    a.h = cv.take(n * inter * es);
    a.rstd1 = cv.take_f32(n);
    a.rstd2 = cv.take_f32(n);
    a.lse = cv.take_f32(n * size_t(c.num_attention_heads));
  }
  void* x_final = cv.take(n * d * es);
  void* xn_final = cv.take(n * d * es);
  float* rstd_final = cv.take_f32(n);
  void* logits = cv.take(n * V * es);
  void* dlogits = cv.take(n * V * es);
  auto* positions = static_cast<int32_t*>(cv.take(n * sizeof(int32_t)));
  void* dx = cv.take(n * d * es);
  void* dxn = cv.take(n * d * es);
  void* dattn = cv.take(n * qd * es);
  void* dq = cv.take(n * qd * es);
  void* dk = cv.take(n * kvd * es);
  void* dv = cv.take(n * kvd * es);
  void* dh = cv.take(n * inter * es);
  void* dgate = cv.take(n * inter * es);
  void* dup = cv.take(n * inter * es);
  if (into) {
    into->acts_ = std::move(acts);
    into->x_final_ = x_final, into->xn_final_ = xn_final, into->rstd_final_ = rstd_final;
    into->logits_ = logits, into->dlogits_ = dlogits, into->positions_ = positions;
    into->dx_ = dx, into->dxn_ = dxn, into->dattn_ = dattn, into->dq_ = dq, into->dk_ = dk;
    into->dv_ = dv, into->dh_ = dh, into->dgate_ = dgate, into->dup_ = dup;
  }
  return cv.used;
}

size_t TrainingModel::activation_bytes(const ModelConfig& cfg, DType act, int max_batch,
                                       int max_seq) {
  return carve(cfg, act, int64_t(max_batch) * max_seq, nullptr, nullptr);
}

TrainingModel::TrainingModel(const ModelConfig& cfg, kernels::Ops& ops, const ModelWeights& weights,
                             const ModelWeights& grads, const float* rope_cos_sin_dev,
                             void* activations, size_t activation_bytes_given, int max_batch,
                             int max_seq)
    : cfg_(cfg), ops_(ops), w_(weights), g_(grads), rope_(rope_cos_sin_dev),
      max_batch_(max_batch), max_seq_(max_seq) {
  if (weights.dtype != ops.act_dtype())
    throw ModelError("TrainingModel: weights are " + std::string(dtype_name(weights.dtype)) +
                     ", the " + ops.device().str() + " backend computes in " +
                     std::string(dtype_name(ops.act_dtype())));
  if (grads.dtype != DType::F32)
    throw ModelError("TrainingModel: gradients must be F32 (got " +
                     std::string(dtype_name(grads.dtype)) + ")");
  if (grads.tensors.size() != weights.tensors.size())
    throw ModelError("TrainingModel: gradients are bound for another config (" +
                     std::to_string(grads.tensors.size()) + " tensors, weights have " +
                     std::to_string(weights.tensors.size()) + ")");
  if (max_seq > cfg.max_position_embeddings)
    throw ModelError("TrainingModel: max_seq " + std::to_string(max_seq) +
                     " exceeds max_position_embeddings " +
                     std::to_string(cfg.max_position_embeddings));
  const size_t need = activation_bytes(cfg, ops.act_dtype(), max_batch, max_seq);
  if (activation_bytes_given < need)
    throw ModelError("TrainingModel: activation buffer of " + std::to_string(activation_bytes_given) +
                     " bytes given, " + std::to_string(need) + " needed for batch " +
                     std::to_string(max_batch) + " x seq " + std::to_string(max_seq));
  carve(cfg, ops.act_dtype(), int64_t(max_batch) * max_seq, static_cast<std::byte*>(activations),
        this);
}

void TrainingModel::check_batch(int B, int T, const char* what) const {
  if (B <= 0 || T <= 0 || int64_t(B) * T > int64_t(max_batch_) * max_seq_ || T > max_seq_)
    throw ModelError(std::string("TrainingModel::") + what + ": batch " + std::to_string(B) +
                     " x seq " + std::to_string(T) + " does not fit the activations sized for " +
                     std::to_string(max_batch_) + " x " + std::to_string(max_seq_));
}

void TrainingModel::trunk(const int32_t* tokens, int B, int T) {
  const auto& c = cfg_;
  auto& ops = ops_;
  const int64_t N = int64_t(B) * T, d = c.hidden_size, inter = c.intermediate_size;
  const int64_t qd = int64_t(c.num_attention_heads) * c.head_dim;
  const int64_t kvd = int64_t(c.num_key_value_heads) * c.head_dim;
  const size_t row_bytes = size_t(N * d) * dtype_size(ops.act_dtype());
  const float eps = float(c.rms_norm_eps);
  const kernels::AttnShape s = attention_shape(c);

  positions_host_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) positions_host_[size_t(i)] = int32_t(i % T);
  ops.copy_to_device(positions_, positions_host_.data(), size_t(N) * sizeof(int32_t));

  ops.embedding_forward(acts_[0].x_in, w_.embed_tokens.data, tokens, N, d);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    LayerActs& A = acts_[size_t(l)];
    ops.rmsnorm_forward(A.xn1, A.rstd1, A.x_in, L.input_layernorm.data, N, d, eps);
    detail::linear(ops, A.q, A.xn1, L.q_proj, N);
    detail::linear(ops, A.k, A.xn1, L.k_proj, N);
    detail::linear(ops, A.v, A.xn1, L.v_proj, N);
    if (c.attention_bias) {
      ops.add_bias(A.q, L.q_bias.data, N, qd);
      ops.add_bias(A.k, L.k_bias.data, N, kvd);
      ops.add_bias(A.v, L.v_bias.data, N, kvd);
    }
    ops.rope(A.q, positions_, N, c.num_attention_heads, c.head_dim, rope_, false);
    ops.rope(A.k, positions_, N, c.num_key_value_heads, c.head_dim, rope_, false);
    ops.attention_forward(A.attn, A.lse, A.q, A.k, A.v, B, T, s);
    ops.copy_on_device(A.x_mid, A.x_in, row_bytes);
    detail::linear(ops, A.x_mid, A.attn, L.o_proj, N, 1.f);
    ops.rmsnorm_forward(A.xn2, A.rstd2, A.x_mid, L.post_attention_layernorm.data, N, d, eps);
    detail::linear(ops, A.gate, A.xn2, L.gate_proj, N);
    detail::linear(ops, A.up, A.xn2, L.up_proj, N);
    ops.swiglu_forward(A.h, A.gate, A.up, N * inter);
    void* next = l + 1 < c.num_hidden_layers ? acts_[size_t(l) + 1].x_in : x_final_;
    ops.copy_on_device(next, A.x_mid, row_bytes);
    detail::linear(ops, next, A.h, L.down_proj, N, 1.f);
  }
  ops.rmsnorm_forward(xn_final_, rstd_final_, x_final_, w_.norm.data, N, d, eps);
}

void TrainingModel::forward(const int32_t* tokens, int B, int T, float* logprob, float* entropy) {
  check_batch(B, T, "forward");
  if (T < 2) throw ModelError("TrainingModel::forward: sequences need at least 2 tokens (got " +
                              std::to_string(T) + ")");
  trunk(tokens, B, T);
  const int64_t V = cfg_.vocab_size, N = int64_t(B) * T;
  const DType act = ops_.act_dtype();
  detail::linear(ops_, logits_, xn_final_, w_.lm_head, N);
  for (int b = 0; b < B; ++b)
    ops_.token_logprobs(logprob + int64_t(b) * (T - 1),
                        entropy ? entropy + int64_t(b) * (T - 1) : nullptr,
                        detail::at_row(logits_, int64_t(b) * T, V, act),
                        tokens + int64_t(b) * T + 1, T - 1, V);
  tokens_ = tokens, B_ = B, T_ = T;
}

void TrainingModel::logits(const int32_t* tokens, int B, int T, void* logits_out) {
  check_batch(B, T, "logits");
  trunk(tokens, B, T);
  detail::linear(ops_, logits_out, xn_final_, w_.lm_head, int64_t(B) * T);
  tokens_ = nullptr;  // the saved activations no longer belong to a forward with log-probs
}

void TrainingModel::backward(const float* dlogprob) {
  if (!tokens_) throw ModelError("TrainingModel::backward: no forward to differentiate "
                                 "(call forward first; logits() does not keep state)");
  const auto& c = cfg_;
  auto& ops = ops_;
  const int B = B_, T = T_;
  const int64_t N = int64_t(B) * T, d = c.hidden_size, inter = c.intermediate_size;
  const int64_t V = c.vocab_size;
  const int64_t qd = int64_t(c.num_attention_heads) * c.head_dim;
  const int64_t kvd = int64_t(c.num_key_value_heads) * c.head_dim;
  const DType act = ops.act_dtype();
  const kernels::AttnShape s = attention_shape(c);
  auto f32 = [](const TensorView& t) { return static_cast<float*>(t.data); };

  // Head: dlogits for positions 0..T-2 of each sequence; the last position predicts nothing.
  for (int b = 0; b < B; ++b) {
    const int64_t row0 = int64_t(b) * T;
    ops.token_logprobs_backward(detail::at_row(dlogits_, row0, V, act),
                                detail::at_row(logits_, row0, V, act), tokens_ + row0 + 1,
                                dlogprob + int64_t(b) * (T - 1), T - 1, V);
    ops.fill_zero(detail::at_row(dlogits_, row0 + T - 1, V, act), size_t(V) * dtype_size(act));
  }
  detail::linear_dx(ops, dxn_, dlogits_, w_.lm_head, N);
  detail::linear_dw(ops, g_.lm_head, dlogits_, xn_final_, N);  // embed grad when tied
  ops.fill_zero(dx_, size_t(N * d) * dtype_size(act));
  ops.rmsnorm_backward(dx_, f32(g_.norm), dxn_, x_final_, w_.norm.data, rstd_final_, N, d);

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    const LayerWeights& G = g_.layers[size_t(l)];
    const LayerActs& A = acts_[size_t(l)];
    // MLP: x_out = x_mid + swiglu(xn2 Wg^T, xn2 Wu^T) Wd^T, xn2 = rmsnorm(x_mid)
    detail::linear_dx(ops, dh_, dx_, L.down_proj, N);
    detail::linear_dw(ops, G.down_proj, dx_, A.h, N);
    ops.swiglu_backward(dgate_, dup_, dh_, A.gate, A.up, N * inter);
    detail::linear_dx(ops, dxn_, dgate_, L.gate_proj, N);
    detail::linear_dx(ops, dxn_, dup_, L.up_proj, N, 1.f);
    detail::linear_dw(ops, G.gate_proj, dgate_, A.xn2, N);
    detail::linear_dw(ops, G.up_proj, dup_, A.xn2, N);
    ops.rmsnorm_backward(dx_, f32(G.post_attention_layernorm), dxn_, A.x_mid,
                         L.post_attention_layernorm.data, A.rstd2, N, d);
    // Attention: x_mid = x_in + attn(rope(q), rope(k), v) Wo^T, q/k/v = xn1 W^T + b
    detail::linear_dx(ops, dattn_, dx_, L.o_proj, N);
    detail::linear_dw(ops, G.o_proj, dx_, A.attn, N);
    ops.attention_backward(dq_, dk_, dv_, dattn_, A.q, A.k, A.v, A.attn, A.lse, B, T, s);
    ops.rope(dq_, positions_, N, c.num_attention_heads, c.head_dim, rope_, true);
    ops.rope(dk_, positions_, N, c.num_key_value_heads, c.head_dim, rope_, true);
    if (c.attention_bias) {
      ops.bias_backward(f32(G.q_bias), dq_, N, qd);
      ops.bias_backward(f32(G.k_bias), dk_, N, kvd);
      ops.bias_backward(f32(G.v_bias), dv_, N, kvd);
    }
    detail::linear_dx(ops, dxn_, dq_, L.q_proj, N);
    detail::linear_dx(ops, dxn_, dk_, L.k_proj, N, 1.f);
    detail::linear_dx(ops, dxn_, dv_, L.v_proj, N, 1.f);
    detail::linear_dw(ops, G.q_proj, dq_, A.xn1, N);
    detail::linear_dw(ops, G.k_proj, dk_, A.xn1, N);
    detail::linear_dw(ops, G.v_proj, dv_, A.xn1, N);
    ops.rmsnorm_backward(dx_, f32(G.input_layernorm), dxn_, A.x_in, L.input_layernorm.data,
                         A.rstd1, N, d);
  }
  ops.embedding_backward(f32(g_.embed_tokens), dx_, tokens_, N, d);
}

}  // namespace siesta::model
