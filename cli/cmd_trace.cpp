// `siesta trace export --chrome TRACE -o OUT` and `siesta trace summary TRACE`.
#include <iostream>

#include "commands.hpp"
#include "siesta/actors.hpp"

namespace siesta::cli {

Runner add_trace(CLI::App& app) {
  auto* sub = app.add_subcommand("trace", "Export or summarise a recorded message trace");
  sub->require_subcommand(1);
  struct Opts { std::string trace, out; bool chrome = false; };
  auto o = std::make_shared<Opts>();
  auto* exp = sub->add_subcommand("export", "Write Chrome trace-event JSON (open it in Perfetto)");
  exp->add_flag("--chrome", o->chrome, "Chrome trace-event format (the only format)")->required();
  exp->add_option("trace", o->trace, "Trace file")->required()->check(CLI::ExistingFile);
  exp->add_option("-o,--output", o->out, "Output JSON file")->required();
  auto* sum = sub->add_subcommand("summary", "Per-phase time breakdown per step");
  sum->add_option("trace", o->trace, "Trace file")->required()->check(CLI::ExistingFile);
  return [o, exp] {
    try {
      if (exp->parsed()) {
        actors::export_chrome(o->trace, o->out);
        std::cout << "wrote " << o->out << " (open it at ui.perfetto.dev or chrome://tracing)\n";
        return 0;
      }
      auto t = actors::read_trace(o->trace);
      std::cout << "trace " << o->trace << ": " << t.events.size() << " messages\n"
                << actors::format_summary(actors::phase_breakdown(t));
      return 0;
    } catch (const std::exception& e) {
      return usage_error(e.what());
    }
  };
}

}  // namespace siesta::cli
