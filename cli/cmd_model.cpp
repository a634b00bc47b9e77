// `siesta model create --preset NAME --out DIR` (random weights saved as an HF folder) and
// `siesta model info DIR|PRESET` (shape, parameter count, bytes).
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "siesta/model.hpp"

namespace siesta::cli {

namespace {

std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, unit[u]);
  return buf;
}

DType parse_dtype(const std::string& s) {
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp16" || s == "float16") return DType::F16;
  if (s == "fp32" || s == "float32") return DType::F32;
  throw model::ModelError("unknown --dtype '" + s + "' (allowed: bf16, fp16, fp32)");
}

void print_info(const model::ModelConfig& c, const std::string& what) {
  std::cout << what << "\n"
            << "  architecture:  " << c.architecture << "\n"
            << "  layers:        " << c.num_hidden_layers << "\n"
            << "  hidden:        " << c.hidden_size << " (intermediate " << c.intermediate_size
            << ")\n"
            << "  heads:         " << c.num_attention_heads << " query, " << c.num_key_value_heads
            << " key/value, head_dim " << c.head_dim << "\n"
            << "  vocab:         " << c.vocab_size << (c.tie_word_embeddings ? " (tied)" : "")
            << "\n"
            << "  attention bias " << (c.attention_bias ? "yes" : "no") << ", rope_theta "
            << c.rope_theta << ", max positions " << c.max_position_embeddings << "\n"
            << "  parameters:    " << c.num_parameters() << "\n"
            << "  weights:       " << human_bytes(double(model::weights_bytes(c, DType::BF16)))
            << " bf16, " << human_bytes(double(model::weights_bytes(c, DType::F32))) << " fp32\n";
}

}  // namespace

Runner add_model(CLI::App& app) {
  auto* sub = app.add_subcommand("model", "Create random models from presets, inspect models");
  sub->require_subcommand(1);
  struct Opts {
    std::string preset, out, dtype = "bf16", what;
    uint64_t seed = 0;
    size_t max_shard_bytes = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* create = sub->add_subcommand("create", "Write a randomly initialised model of a preset "
                                               "as an HF folder (config.json + safetensors)");
  create->add_option("--preset", o->preset, "Preset name (configs/models/NAME.json) or a "
                                            "config.json path")->required();
  create->add_option("--out", o->out, "Output folder")->required();
  create->add_option("--seed", o->seed, "Random seed (default 0)");
  create->add_option("--dtype", o->dtype, "bf16 (default), fp16 or fp32");
  create->add_option("--max-shard-bytes", o->max_shard_bytes,
                     "Split into shards of at most this many bytes (0: one file)");
  auto* info = sub->add_subcommand("info", "Print a model's shape, parameters and bytes");
  info->add_option("model", o->what, "A model folder or a preset name")->required();
  return [o, create] {
    try {
      if (create->parsed()) {
        model::ModelConfig cfg = model::resolve_model_config(o->preset);
        DType dt = parse_dtype(o->dtype);
        model::create_random_model(cfg, o->seed, o->out, dt, o->max_shard_bytes);
        std::cout << "wrote " << o->out << ": " << o->preset << ", " << cfg.num_parameters()
                  << " parameters, " << human_bytes(double(model::weights_bytes(cfg, dt))) << " "
                  << o->dtype << ", seed " << o->seed << "\n";
        return 0;
      }
      if (std::filesystem::is_directory(o->what)) {
        model::ModelFolder f = model::load_model_folder(o->what);
        print_info(f.config(), "model folder " + o->what);
        size_t bytes = 0;
        for (const auto& file : f.files())
          for (const auto& t : file.tensors()) bytes += t.bytes;
        std::cout << "  files:         " << f.files().size() << " safetensors, "
                  << human_bytes(double(bytes)) << " of tensors ("
                  << dtype_name(f.tensor("model.embed_tokens.weight").dtype) << ")\n";
      } else {
        print_info(model::resolve_model_config(o->what), "preset " + o->what);
      }
      return 0;
    } catch (const model::ModelError& e) {
      return usage_error(e.what());
    }
  };
}

}  // namespace siesta::cli
