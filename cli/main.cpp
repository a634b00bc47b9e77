// The `siesta` executable: run, worker, serve, replay, trace, bench, doctor, version, model.
#include <iostream>
#include <map>

#include <spdlog/spdlog.h>

#include "commands.hpp"

namespace siesta::cli {
int usage_error(const std::string& msg) {
  std::cerr << "siesta: error: " << msg << "\n";
  return 2;
}
}  // namespace siesta::cli

int main(int argc, char** argv) {
  using namespace siesta::cli;
  CLI::App app{"siesta: RL training and LLM inference sharing the same GPUs (vLLM sleep mode, "
               "natively)", "siesta"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  std::map<CLI::App*, Runner> runners;
  for (auto add : {add_run, add_worker, add_serve, add_replay, add_trace, add_bench, add_doctor,
                   add_version, add_model}) {
    auto before = app.get_subcommands([](const CLI::App*) { return true; });
    Runner r = add(app);
    for (auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      if (std::find(before.begin(), before.end(), sub) == before.end()) runners[sub] = r;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string where;
    for (auto* sub : app.get_subcommands()) where = " " + sub->get_name();
    return usage_error(std::string(e.what()) + " (see 'siesta" + where + " --help')");
  }
  for (auto* sub : app.get_subcommands()) {
    try {
      return runners.at(sub)();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      return 1;
    }
  }
  return usage_error("no subcommand given (see 'siesta --help')");
}
