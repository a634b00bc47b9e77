// `siesta replay TRACE`: re-drives the state machines from a recorded message trace.
#include "commands.hpp"

namespace siesta::cli {

Runner add_replay(CLI::App& app) {
  auto* sub = app.add_subcommand("replay", "Replay a recorded message trace without a GPU");
  auto trace = std::make_shared<std::string>();
  sub->add_option("trace", *trace, "Trace file (JSON Lines)")->required()->check(CLI::ExistingFile);
  return [] { return usage_error("replay is not available in this build yet"); };
}

}  // namespace siesta::cli
