// The inference pass: embeddings, then per layer RMSNorm -> q/k/v (+bias) -> rope -> write the
// paged cache -> paged attention -> o_proj into the residual -> RMSNorm -> SwiGLU MLP into the
// residual; finally the chosen rows go through the final norm and the LM head. Decode-sized
// batches run the same steps through Ops' fused decode ops, or all layers in one
// Ops::decode_layers call where the backend has it.
#include "siesta/model/inference.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "layers.hpp"

namespace siesta::model {
namespace {

bool one_kernel_decode_requested() {
  static const bool on = [] {
    const char* v = std::getenv("SIESTA_DECODE_LAYERS");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

struct InferBuffers {
  void *x, *xn, *q, *qkv, *attn, *gate_up, *h, *rows, *rows_n, *partials;
};

// True where tensor b starts right where tensor a ends (es bytes an element): one GEMM can
// take the two as one matrix.
bool follows(const TensorView& b, const TensorView& a, size_t es) {
  return b.data == static_cast<const std::byte*>(a.data) + size_t(a.numel()) * es;
}

// Columns of the MLP buffers stored a column per token (InferenceModel::mlp), padded to whole
// 16-byte groups.
int64_t padded_tokens(int64_t n) { return (n + 7) / 8 * 8; }

InferBuffers carve(const ModelConfig& c, DType act, int T, detail::Carver& cv) {
  const size_t es = dtype_size(act), n = size_t(T);
  const size_t d = size_t(c.hidden_size), inter = size_t(c.intermediate_size);
  const size_t qd = size_t(c.num_attention_heads) * c.head_dim;
  const size_t kvd = size_t(c.num_key_value_heads) * c.head_dim;
  InferBuffers b;
  b.x = cv.take(n * d * es);
  b.xn = cv.take(n * d * es);
  b.q = cv.take(n * qd * es);
  b.qkv = cv.take(n * (qd + 2 * kvd) * es);
  b.attn = cv.take(n * qd * es);
  const size_t np = size_t(padded_tokens(T));
  b.gate_up = cv.take(2 * np * inter * es);
  b.h = cv.take(np * inter * es);
  b.rows = cv.take(n * d * es);
  b.rows_n = cv.take(n * d * es);
  const int step_tokens = std::min(T, kernels::Ops::kDecodeStepMaxTokens);
  b.partials = cv.take(kernels::Ops::decode_step_partials_bytes(step_tokens, attention_shape(c)));
  return b;
}

}  // namespace

size_t InferenceModel::workspace_bytes(const ModelConfig& cfg, DType act, int max_tokens) {
  detail::Carver cv{nullptr};
  carve(cfg, act, max_tokens, cv);
  return cv.used;
}

InferenceModel::InferenceModel(const ModelConfig& cfg, kernels::Ops& ops,
                               const ModelWeights& weights, const float* rope_cos_sin_dev,
                               std::vector<kernels::PagedKv> kv, void* workspace,
                               size_t workspace_bytes_given, int max_tokens)
    : cfg_(cfg), ops_(ops), w_(weights), rope_(rope_cos_sin_dev), max_tokens_(max_tokens) {
  if (weights.dtype != ops.act_dtype())
    throw ModelError("InferenceModel: weights are " + std::string(dtype_name(weights.dtype)) +
                     ", the " + ops.device().str() + " backend computes in " +
                     std::string(dtype_name(ops.act_dtype())));
  const size_t need = workspace_bytes(cfg, ops.act_dtype(), max_tokens);
  if (workspace_bytes_given < need)
    throw ModelError("InferenceModel: workspace of " + std::to_string(workspace_bytes_given) +
                     " bytes given, " + std::to_string(need) + " needed for max_tokens " +
                     std::to_string(max_tokens));
  set_kv_caches(std::move(kv));
  detail::Carver cv{static_cast<std::byte*>(workspace)};
  InferBuffers b = carve(cfg, ops.act_dtype(), max_tokens, cv);
  x_ = b.x, xn_ = b.xn, q_ = b.q, qkv_ = b.qkv, attn_ = b.attn;
  gate_up_ = b.gate_up, h_ = b.h, rows_ = b.rows, rows_n_ = b.rows_n;
  partials_ = b.partials;
}

void InferenceModel::set_kv_caches(std::vector<kernels::PagedKv> kv) {
  if (kv.size() != size_t(cfg_.num_hidden_layers))
    throw ModelError("InferenceModel: " + std::to_string(kv.size()) + " KV caches given, the " +
                     "model has " + std::to_string(cfg_.num_hidden_layers) + " layers");
  kv_ = std::move(kv);
}

void InferenceModel::forward(const int32_t* tokens, const kernels::PagedBatch& b,
                             const int32_t* logits_rows, int n_rows, void* logits_out) {
  const int64_t N = b.num_tokens;
  if (N <= 0 || N > max_tokens_)
    throw ModelError("InferenceModel::forward: " + std::to_string(N) + " new tokens, allowed 1.." +
                     std::to_string(max_tokens_) + " (the workspace's max_tokens)");
  if (!logits_rows && n_rows != N)
    throw ModelError("InferenceModel::forward: logits for every token need n_rows == " +
                     std::to_string(N) + " (got " + std::to_string(n_rows) + ")");
  if (n_rows < 0 || n_rows > N)
    throw ModelError("InferenceModel::forward: n_rows " + std::to_string(n_rows) +
                     " outside 0.." + std::to_string(N));
  const auto& c = cfg_;
  const int64_t d = c.hidden_size, inter = c.intermediate_size;
  const float eps = float(c.rms_norm_eps);
  const kernels::AttnShape s = attention_shape(c);
  auto& ops = ops_;

  // Decode-sized batches take the fused ops (one pass over each layer's weights per fused op);
  // prefill takes the op-by-op sequence, whose GEMMs have enough rows to be compute-bound.
  const bool fused = N <= ops.fused_decode_max_tokens(d);
  ops.embedding_forward(x_, w_.embed_tokens.data, tokens, N, d);
  // Every layer in one call (Ops::decode_layers), where asked for and the backend has it: on
  // an H200 it is not yet faster than the fused ops one by one (docs/results/2026-12-02-h200-
  // decode-layers), so SIESTA_DECODE_LAYERS=1 opts in.
  const bool one_call = fused && N <= kernels::Ops::kDecodeStepMaxTokens &&
                        one_kernel_decode_requested() && decode_layers(b);
  for (int l = 0; l < (one_call ? 0 : c.num_hidden_layers); ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    if (fused) {
      kernels::Ops::QkvWeights qkv{L.q_proj.data, L.k_proj.data, L.v_proj.data,
                                   L.q_bias.data, L.k_bias.data, L.v_bias.data};
      ops.norm_qkv_rope_cache(q_, x_, L.input_layernorm.data, eps, d, qkv, rope_,
                              kv_[size_t(l)], b, s);
    } else {
      ops.rmsnorm_forward(xn_, nullptr, x_, L.input_layernorm.data, N, d, eps);
      project_qkv(L, N);
      const bool bias = c.attention_bias;
      ops.qkv_bias_rope_cache(q_, qkv_, bias ? L.q_bias.data : nullptr,
                              bias ? L.k_bias.data : nullptr, bias ? L.v_bias.data : nullptr, rope_,
                              kv_[size_t(l)], b, s);
    }
    ops.paged_attention(attn_, q_, kv_[size_t(l)], b, s);
    detail::linear(ops, x_, attn_, L.o_proj, N, 1.f);
    if (fused) {
      ops.norm_gate_up(h_, x_, L.post_attention_layernorm.data, eps, L.gate_proj.data,
                       L.up_proj.data, N, d, inter);
      detail::linear(ops, x_, h_, L.down_proj, N, 1.f);
    } else {
      ops.rmsnorm_forward(xn_, nullptr, x_, L.post_attention_layernorm.data, N, d, eps);
      mlp(L, N);
    }
  }
  const void* last = x_;
  if (logits_rows) {
    ops.embedding_forward(rows_, x_, logits_rows, n_rows, d);  // a row gather
    last = rows_;
  }
  ops.rmsnorm_forward(rows_n_, nullptr, last, w_.norm.data, n_rows, d, eps);
  detail::linear(ops, logits_out, rows_n_, w_.lm_head, n_rows);
}

// x_ += swiglu(xn_ Wg^T, xn_ Wu^T) Wd^T for n tokens. Up to 512 tokens (decode batches, short
// prefill chunks), where the gate and up weights lie back to back (parameter_specs puts them
// so), one GEMM computes both as (Wg | Wu) xn_^T: the result is transposed, [2 inter, n] (a
// column per token), so that the gate rows and the up rows are two blocks that swiglu_forward
// takes as they are; the down GEMM reads h transposed. H200, 0.5b decode at batch 64 (with
// q/k/v in one GEMM): 1.55 -> 1.33 ms per step. Larger chunks keep two GEMMs in the usual
// layout: with this one the 8192-token chunks of a 64 x 1024-token prefill took ~30% longer.
constexpr int64_t kOneGemmMlpMaxTokens = 512;

void InferenceModel::mlp(const LayerWeights& L, int64_t n) {
  const int64_t d = cfg_.hidden_size, inter = cfg_.intermediate_size;
  const size_t es = dtype_size(ops_.act_dtype());
  auto& ops = ops_;
  if (n > kOneGemmMlpMaxTokens || !follows(L.up_proj, L.gate_proj, es)) {
    void* up = static_cast<std::byte*>(gate_up_) + size_t(n * inter) * es;
    detail::linear(ops, gate_up_, xn_, L.gate_proj, n);
    detail::linear(ops, up, xn_, L.up_proj, n);
    ops.swiglu_forward(h_, gate_up_, up, n * inter);
    detail::linear(ops, x_, h_, L.down_proj, n, 1.f);
    return;
  }
  const int64_t ld = padded_tokens(n);
  kernels::GemmArgs g;  // gate_up_ [2 inter, ld] = (Wg | Wu) [2 inter, d] . xn_ [n, d]^T
  g.m = 2 * inter, g.n = n, g.k = d;
  g.a = L.gate_proj.data, g.lda = d;
  g.trans_b = true, g.b = xn_, g.ldb = d;
  g.c = gate_up_, g.ldc = ld, g.c_dtype = ops.act_dtype();
  ops.gemm(g);
  // Padding columns too (never read below): one contiguous call.
  ops.swiglu_forward(h_, gate_up_, static_cast<std::byte*>(gate_up_) + size_t(inter * ld) * es,
                     inter * ld);
  kernels::GemmArgs dn;  // x_ [n, d] += h_^T [n, inter] . Wd^T, h_ stored [inter, ld]
  dn.m = n, dn.n = d, dn.k = inter;
  dn.trans_a = true, dn.a = h_, dn.lda = ld;
  dn.trans_b = true, dn.b = L.down_proj.data, dn.ldb = inter;
  dn.beta = 1.f, dn.c = x_, dn.ldc = d, dn.c_dtype = ops.act_dtype();
  ops.gemm(dn);
}

// qkv_[t] = xn_[t] (Wq | Wk | Wv)^T, a row of q | k | v per token: one GEMM where the three
// weights lie back to back (parameter_specs puts them so), else three into the row's parts.
void InferenceModel::project_qkv(const LayerWeights& L, int64_t n) {
  const int64_t d = cfg_.hidden_size;
  const int64_t qd = int64_t(cfg_.num_attention_heads) * cfg_.head_dim;
  const int64_t kvd = int64_t(cfg_.num_key_value_heads) * cfg_.head_dim;
  const size_t es = dtype_size(ops_.act_dtype());
  const bool packed = follows(L.k_proj, L.q_proj, es) && follows(L.v_proj, L.k_proj, es);
  kernels::GemmArgs g;
  g.trans_b = true;
  g.m = n, g.k = d;
  g.a = xn_, g.lda = d;
  g.ldb = d;
  g.ldc = qd + 2 * kvd;
  g.c_dtype = ops_.act_dtype();
  struct Part { const void* w; int64_t rows, col; };
  const Part all{L.q_proj.data, qd + 2 * kvd, 0};
  const Part parts[3] = {{L.q_proj.data, qd, 0}, {L.k_proj.data, kvd, qd},
                         {L.v_proj.data, kvd, qd + kvd}};
  const Part* first = packed ? &all : parts;
  for (int i = 0; i < (packed ? 1 : 3); ++i) {
    g.n = first[i].rows;
    g.b = first[i].w;
    g.c = static_cast<std::byte*>(qkv_) + size_t(first[i].col) * es;
    ops_.gemm(g);
  }
}

bool InferenceModel::decode_layers(const kernels::PagedBatch& b) {
  const auto& c = cfg_;
  std::vector<kernels::Ops::DecodeLayerWeights> layers(size_t(c.num_hidden_layers));
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerWeights& L = w_.layers[l];
    auto& w = layers[l];
    w.qkv = {L.q_proj.data, L.k_proj.data, L.v_proj.data,
             L.q_bias.data, L.k_bias.data, L.v_bias.data};
    w.input_norm = L.input_layernorm.data;
    w.o = L.o_proj.data;
    w.post_norm = L.post_attention_layernorm.data;
    w.gate = L.gate_proj.data;
    w.up = L.up_proj.data;
    w.down = L.down_proj.data;
  }
  kernels::Ops::DecodeStep st;
  st.x = x_;
  st.d = c.hidden_size;
  st.inter = c.intermediate_size;
  st.eps = float(c.rms_norm_eps);
  st.n_layers = c.num_hidden_layers;
  st.layers = layers.data();
  st.caches = kv_.data();
  st.cos_sin_f32 = rope_;
  st.q = q_;
  st.h = h_;
  st.partials = partials_;
  return ops_.decode_layers(st, b, attention_shape(c));
}

}  // namespace siesta::model
