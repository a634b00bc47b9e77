// A Llama / Qwen2 model's shape, read from and written to an HF-style config.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace siesta::model {

class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // or Qwen2ForCausalLM
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;                 // defaults to hidden_size / num_attention_heads
  int vocab_size = 0;
  int max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rope_scaling_factor = 1.0; // rope_scaling {"type": "linear", "factor": f}
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // Qwen2: q/k/v projections carry a bias
  std::string torch_dtype = "bfloat16";

  int64_t num_parameters() const;
  // Throws ModelError naming the field and the rule it breaks.
  void validate() const;

  static ModelConfig from_json_text(const std::string& text, const std::string& origin);
  static ModelConfig from_file(const std::filesystem::path& config_json);
  std::string to_json_text() const;
};

}  // namespace siesta::model
