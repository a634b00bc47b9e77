// `siesta serve`: the OpenAI-compatible HTTP server over the inference engine.
#include "commands.hpp"

namespace siesta::cli {

Runner add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  auto model = std::make_shared<std::string>();
  sub->add_option("--model", *model, "Model folder (config.json + *.safetensors) or preset")
      ->required();
  return [] { return usage_error("serve is not available in this build yet"); };
}

}  // namespace siesta::cli
