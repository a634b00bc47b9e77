// A model's parameters as typed views over ONE contiguous buffer. The buffer is one allocation
// (the engine puts it in the allocator's "weights" tag so sleep/wake acts on it; the trainer
// binds fp32 master weights, gradients and AdamW state with the same layout).
//
// Layout: tensors in parameter_specs() order, each starting at a multiple of
// kWeightAlignElems ELEMENTS, so element offsets are identical for every dtype. Consequences a
// caller may rely on: a bf16 buffer and an fp32 buffer of one config convert into each other
// with a single Ops::convert over weights_numel() elements, and whole-buffer fp32 ops (AdamW,
// gradient norm) are valid as long as the padding stays zero (allocate, then fill_zero once).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "siesta/kernels/tensor.hpp"
#include "siesta/model/config.hpp"

namespace siesta::model {

inline constexpr int64_t kWeightAlignElems = 128;

struct ParamSpec {
  std::string name;  // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  Shape shape;       // HF shape: linear weights are [out, in]
};

// Fixed order: model.embed_tokens.weight; per layer input_layernorm, q/k/v_proj weights, then
// their biases when attention_bias, o_proj, post_attention_layernorm, mlp gate/up/down_proj;
// model.norm.weight; lm_head.weight unless tie_word_embeddings. (The q, k, v weights and the
// gate, up weights lie back to back wherever their sizes keep the alignment: the inference
// model then projects each group with one GEMM.)
std::vector<ParamSpec> parameter_specs(const ModelConfig& cfg);

// Elements of the padded buffer, and its size in bytes for one dtype.
int64_t weights_numel(const ModelConfig& cfg);
size_t weights_bytes(const ModelConfig& cfg, DType dtype);

struct LayerWeights {
  TensorView input_layernorm;                    // [hidden]
  TensorView q_proj, k_proj, v_proj, o_proj;     // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  TensorView q_bias, k_bias, v_bias;             // [q_dim], [kv_dim]; data == nullptr without bias
  TensorView post_attention_layernorm;           // [hidden]
  TensorView gate_proj, up_proj, down_proj;      // [inter, hidden] x2, [hidden, inter]
};

struct NamedTensor {
  std::string name;
  TensorView view;
  int64_t offset_elems = 0;  // from the buffer's base, identical for every dtype
};

struct ModelWeights {
  void* base = nullptr;
  DType dtype = DType::F32;
  Device device;
  size_t bytes = 0;
  TensorView embed_tokens;           // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView norm;                   // [hidden]
  TensorView lm_head;                // [vocab, hidden]; the embed_tokens view when tied
  std::vector<NamedTensor> tensors;  // parameter_specs() order (no lm_head entry when tied)

  const std::vector<NamedTensor>& named() const { return tensors; }
  // Throws ModelError naming the tensor when it is not a parameter of this model.
  const TensorView& at(std::string_view name) const;
};

// Binds views over base (weights_bytes(cfg, dtype) bytes on `device`). No memory is touched.
ModelWeights bind_weights(const ModelConfig& cfg, void* base, DType dtype, Device device);

// A host-memory buffer of one model's parameters (or gradients), zero-initialised and bound.
// Used by CPU runs, tests, and as the staging copy when creating or saving models.
class HostWeights {
 public:
  HostWeights(const ModelConfig& cfg, DType dtype);
  HostWeights(HostWeights&&) noexcept = default;
  HostWeights& operator=(HostWeights&&) noexcept = default;
  const ModelWeights& weights() const { return weights_; }
  void* data() { return storage_.data(); }
  size_t bytes() const { return weights_.bytes; }

 private:
  std::vector<std::byte> storage_;
  ModelWeights weights_;
};

}  // namespace siesta::model
