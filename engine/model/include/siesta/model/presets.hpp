// Model presets (configs/models/<name>.json, HF config.json content) and random models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "siesta/model/config.hpp"
#include "siesta/model/weights.hpp"

namespace siesta::model {

// Searches $SIESTA_CONFIGS/models, <source dir>/configs/models, then ../configs/models next to
// the executable. Throws ModelError listing the places looked at and the presets found.
std::filesystem::path find_preset(const std::string& name);
ModelConfig load_preset(const std::string& name);
std::vector<std::string> preset_names();
// A folder with config.json, or a preset name.
ModelConfig resolve_model_config(const std::string& folder_or_preset);

// Fills host weights of any floating dtype: normal(0, std) for matrices and embeddings,
// 0 for biases, 1 for norms. Deterministic in seed (its own generator, not <random>'s
// implementation-defined distributions).
void init_random_weights(const ModelConfig& cfg, const ModelWeights& host_weights, uint64_t seed,
                         float std = 0.02f);

// Random init in fp32, converted to dtype, saved as an HF folder (config.json + safetensors).
void create_random_model(const ModelConfig& cfg, uint64_t seed, const std::filesystem::path& dir,
                         DType dtype = DType::BF16, size_t max_shard_bytes = 0);

}  // namespace siesta::model
