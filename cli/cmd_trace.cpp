// `siesta trace export|summary TRACE`: turns a message trace into Chrome JSON or a summary.
#include "commands.hpp"

namespace siesta::cli {

Runner add_trace(CLI::App& app) {
  auto* sub = app.add_subcommand("trace", "Export or summarise a recorded message trace");
  sub->require_subcommand(1);
  auto trace = std::make_shared<std::string>();
  auto* exp = sub->add_subcommand("export", "Write Chrome trace-event JSON (Perfetto)");
  exp->add_option("trace", *trace, "Trace file")->required()->check(CLI::ExistingFile);
  auto* sum = sub->add_subcommand("summary", "Per-phase time breakdown per step");
  sum->add_option("trace", *trace, "Trace file")->required()->check(CLI::ExistingFile);
  return [] { return usage_error("trace is not available in this build yet"); };
}

}  // namespace siesta::cli
