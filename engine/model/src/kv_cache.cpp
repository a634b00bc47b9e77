// Shapes shared by both passes (attention, rope table) and the paged KV cache layout.
#include <cmath>

#include "siesta/model/inference.hpp"

namespace siesta::model {

kernels::AttnShape attention_shape(const ModelConfig& cfg) {
  return {cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
          float(1.0 / std::sqrt(double(cfg.head_dim)))};
}

std::vector<float> rope_table(const ModelConfig& cfg) {
  return kernels::rope_cos_sin_table(cfg.max_position_embeddings, cfg.head_dim, cfg.rope_theta,
                                     cfg.rope_scaling_factor);
}

namespace {
size_t kv_half_bytes(const ModelConfig& cfg, DType dtype, int num_blocks, int block_size) {
  return size_t(num_blocks) * size_t(block_size) * size_t(cfg.num_key_value_heads) *
         size_t(cfg.head_dim) * dtype_size(dtype);
}
}  // namespace

size_t kv_cache_bytes(const ModelConfig& cfg, DType dtype, int num_blocks, int block_size) {
  return 2 * size_t(cfg.num_hidden_layers) * kv_half_bytes(cfg, dtype, num_blocks, block_size);
}

std::vector<kernels::PagedKv> bind_kv_caches(const ModelConfig& cfg, void* base, DType dtype,
                                             int num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0)
    throw ModelError("bind_kv_caches: num_blocks (" + std::to_string(num_blocks) +
                     ") and block_size (" + std::to_string(block_size) + ") must be > 0");
  const size_t half = kv_half_bytes(cfg, dtype, num_blocks, block_size);
  std::vector<kernels::PagedKv> kv(size_t(cfg.num_hidden_layers));
  auto* p = static_cast<std::byte*>(base);
  for (auto& layer : kv) {
    layer = {p, p + half, num_blocks, block_size};
    p += 2 * half;
  }
  return kv;
}

}  // namespace siesta::model
