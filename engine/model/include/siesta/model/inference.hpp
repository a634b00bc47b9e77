// The inference forward pass, written once over kernels::Ops so the CPU and CUDA backends share
// it. Prefill and decode go through the same path: each layer writes the new tokens' K/V into
// its paged cache (kv_cache_write), then attends over the cache (paged_attention).
#pragma once

#include <vector>

#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/weights.hpp"

namespace siesta::model {

kernels::AttnShape attention_shape(const ModelConfig& cfg);
// Host [max_position_embeddings, head_dim] cos/sin table for Ops::rope; copy it to the device.
std::vector<float> rope_table(const ModelConfig& cfg);

// Paged KV cache of every layer in ONE buffer (one allocation in the "kv_cache" tag):
// layer l's K then V, each [num_blocks, block_size, n_kv_heads, head_dim] in dtype.
size_t kv_cache_bytes(const ModelConfig& cfg, DType dtype, int num_blocks, int block_size);
std::vector<kernels::PagedKv> bind_kv_caches(const ModelConfig& cfg, void* base, DType dtype,
                                             int num_blocks, int block_size);

class InferenceModel {
 public:
  // Workspace for up to max_tokens new tokens per forward (all sequences together).
  static size_t workspace_bytes(const ModelConfig& cfg, DType act, int max_tokens);

  // weights: act dtype, on ops' device. rope_cos_sin_dev: rope_table(cfg) on the device.
  // kv: one PagedKv per layer. workspace: workspace_bytes(cfg, ops.act_dtype(), max_tokens).
  // Nothing is copied; every pointer must stay valid while the model is used.
  InferenceModel(const ModelConfig& cfg, kernels::Ops& ops, const ModelWeights& weights,
                 const float* rope_cos_sin_dev, std::vector<kernels::PagedKv> kv,
                 void* workspace, size_t workspace_bytes, int max_tokens);

  // tokens_dev [b.num_tokens]. logits_rows_dev [n_rows] picks which new tokens get logits
  // (normally q_start[s + 1] - 1 for each sequence s: its last token); nullptr means every new
  // token (n_rows must then equal b.num_tokens). logits_out [n_rows, vocab] in act dtype.
  void forward(const int32_t* tokens_dev, const kernels::PagedBatch& b,
               const int32_t* logits_rows_dev, int n_rows, void* logits_out);

  // After an update that moved memory (the allocator keeps addresses across sleep/wake, so
  // normally none is needed).
  void set_weights(const ModelWeights& weights) { w_ = weights; }
  void set_kv_caches(std::vector<kernels::PagedKv> kv);

  const ModelConfig& config() const { return cfg_; }
  int max_tokens() const { return max_tokens_; }

 private:
  ModelConfig cfg_;
  kernels::Ops& ops_;
  ModelWeights w_;
  const float* rope_;
  std::vector<kernels::PagedKv> kv_;
  int max_tokens_;
  // Workspace carve-up (act dtype): residual, normed, q, the q | k | v rows of the projection,
  // attention output, gate and up, swiglu output, gathered last rows, their norm; then
  // attention partial sums.
  void *x_, *xn_, *q_, *qkv_, *attn_, *gate_up_, *h_, *rows_, *rows_n_;
  void* partials_;  // attention partial sums of Ops::decode_layers

  // Every layer through Ops::decode_layers; false when the backend declines (nothing done).
  bool decode_layers(const kernels::PagedBatch& b);
  void project_qkv(const LayerWeights& L, int64_t n);
  void mlp(const LayerWeights& L, int64_t n);
};

}  // namespace siesta::model
