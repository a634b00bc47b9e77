// Parameter names/shapes in HF order and their binding onto one contiguous buffer.
#include "siesta/model/weights.hpp"

namespace siesta::model {
namespace {

int64_t align_up(int64_t x) { return (x + kWeightAlignElems - 1) / kWeightAlignElems * kWeightAlignElems; }

}  // namespace

std::vector<ParamSpec> parameter_specs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, inter = c.intermediate_size, v = c.vocab_size;
  const int64_t q = int64_t(c.num_attention_heads) * c.head_dim;
  const int64_t kv = int64_t(c.num_key_value_heads) * c.head_dim;
  std::vector<ParamSpec> s;
  s.push_back({"model.embed_tokens.weight", {v, h}});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {h}});
    // q, k and v back to back (where their sizes keep the alignment): one GEMM projects all
    // three (InferenceModel).
    s.push_back({p + "self_attn.q_proj.weight", {q, h}});
    s.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    s.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    if (c.attention_bias) {
      s.push_back({p + "self_attn.q_proj.bias", {q}});
      s.push_back({p + "self_attn.k_proj.bias", {kv}});
      s.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    s.push_back({p + "self_attn.o_proj.weight", {h, q}});
    s.push_back({p + "post_attention_layernorm.weight", {h}});
    s.push_back({p + "mlp.gate_proj.weight", {inter, h}});
    s.push_back({p + "mlp.up_proj.weight", {inter, h}});
    s.push_back({p + "mlp.down_proj.weight", {h, inter}});
  }
  s.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {v, h}});
  return s;
}

int64_t weights_numel(const ModelConfig& cfg) {
  int64_t off = 0;
  for (const auto& p : parameter_specs(cfg)) off = align_up(off + numel(p.shape));
  return off;
}

size_t weights_bytes(const ModelConfig& cfg, DType dtype) {
  return size_t(weights_numel(cfg)) * dtype_size(dtype);
}

const TensorView& ModelWeights::at(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t.view;
  throw ModelError("no parameter named '" + std::string(name) + "' in this model (" +
                   std::to_string(tensors.size()) + " parameters, e.g. '" +
                   (tensors.empty() ? std::string() : tensors.front().name) + "')");
}

ModelWeights bind_weights(const ModelConfig& cfg, void* base, DType dtype, Device device) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw ModelError("bind_weights: dtype " + std::string(dtype_name(dtype)) +
                     " is not a floating type (allowed: F32, BF16, F16)");
  ModelWeights w;
  w.base = base;
  w.dtype = dtype;
  w.device = device;
  w.bytes = weights_bytes(cfg, dtype);
  w.layers.resize(size_t(cfg.num_hidden_layers));
  int64_t off = 0;
  for (auto& spec : parameter_specs(cfg)) {
    TensorView v{static_cast<std::byte*>(base) + size_t(off) * dtype_size(dtype), dtype,
                 spec.shape, device};
    w.tensors.push_back({spec.name, v, off});
    off = align_up(off + numel(spec.shape));
    const std::string& n = spec.name;
    if (n == "model.embed_tokens.weight") { w.embed_tokens = v; continue; }
    if (n == "model.norm.weight") { w.norm = v; continue; }
    if (n == "lm_head.weight") { w.lm_head = v; continue; }
    // "model.layers.<l>.<rest>"
    size_t dot = n.find('.', 13);
    auto& L = w.layers[size_t(std::stoi(n.substr(13, dot - 13)))];
    std::string rest = n.substr(dot + 1);
    if (rest == "input_layernorm.weight") L.input_layernorm = v;
    else if (rest == "self_attn.q_proj.weight") L.q_proj = v;
    else if (rest == "self_attn.k_proj.weight") L.k_proj = v;
    else if (rest == "self_attn.v_proj.weight") L.v_proj = v;
    else if (rest == "self_attn.o_proj.weight") L.o_proj = v;
    else if (rest == "self_attn.q_proj.bias") L.q_bias = v;
    else if (rest == "self_attn.k_proj.bias") L.k_bias = v;
    else if (rest == "self_attn.v_proj.bias") L.v_bias = v;
    else if (rest == "post_attention_layernorm.weight") L.post_attention_layernorm = v;
    else if (rest == "mlp.gate_proj.weight") L.gate_proj = v;
    else if (rest == "mlp.up_proj.weight") L.up_proj = v;
    else if (rest == "mlp.down_proj.weight") L.down_proj = v;
  }
  if (cfg.tie_word_embeddings) w.lm_head = w.embed_tokens;
  return w;
}

HostWeights::HostWeights(const ModelConfig& cfg, DType dtype)
    : storage_(weights_bytes(cfg, dtype)),
      weights_(bind_weights(cfg, storage_.data(), dtype, Device::cpu())) {}

}  // namespace siesta::model
