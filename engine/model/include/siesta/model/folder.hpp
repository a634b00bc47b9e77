// An HF model folder: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Loading checks every expected tensor (present, right shape,
// floating dtype) and rejects extra ones before any byte is copied.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/safetensors.hpp"
#include "siesta/model/weights.hpp"

namespace siesta::model {

class ModelFolder {
 public:
  const std::filesystem::path& dir() const { return dir_; }
  const ModelConfig& config() const { return cfg_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // The file entry of parameter `name` (throws ModelError when not a parameter).
  const SafetensorsEntry& tensor(std::string_view name) const;
  // Copies every parameter into dst (any dtype, any backend): same-dtype tensors go straight
  // from the mapping through ops.copy_to_device, others are converted on the host first.
  void load_into(const ModelWeights& dst, kernels::Ops& ops) const;

 private:
  friend ModelFolder load_model_folder(const std::filesystem::path& dir);
  std::filesystem::path dir_;
  ModelConfig cfg_;
  std::vector<SafetensorsFile> files_;
  std::vector<const SafetensorsEntry*> by_spec_;  // parameter_specs() order
};

ModelFolder load_model_folder(const std::filesystem::path& dir);

// Writes config.json and the weights in w.dtype: one model.safetensors, or shards
// model-0000i-of-0000n.safetensors plus model.safetensors.index.json when max_shard_bytes > 0
// and the weights exceed it. Weights in device memory are read back through ops (required
// then; host weights need none).
void save_model_folder(const std::filesystem::path& dir, const ModelConfig& cfg,
                       const ModelWeights& w, size_t max_shard_bytes = 0,
                       kernels::Ops* ops = nullptr);

}  // namespace siesta::model
