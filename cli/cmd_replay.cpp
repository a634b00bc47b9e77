// `siesta replay TRACE`: re-drives the state machines from a recorded message trace.
#include <iostream>

#include "commands.hpp"
#include "siesta/actors.hpp"

namespace siesta::cli {

Runner add_replay(CLI::App& app) {
  auto* sub = app.add_subcommand("replay", "Replay a recorded message trace without a GPU and "
                                           "report the first divergence");
  struct Opts { std::string trace; int64_t until = -1; std::string break_on; bool step = false; };
  auto o = std::make_shared<Opts>();
  sub->add_option("trace", o->trace, "Trace file (JSON Lines)")->required()->check(CLI::ExistingFile);
  sub->add_option("--until", o->until, "Stop after this sequence number")->check(CLI::NonNegativeNumber);
  sub->add_option("--break-on", o->break_on, "Stop at the first message of this type (sleep, wake, ...)");
  sub->add_flag("--step", o->step, "Show each message and wait for Enter (c: continue, q: quit)");
  return [o] {
    actors::ReplayOptions ro;
    if (o->until >= 0) ro.until_seq = o->until;
    if (!o->break_on.empty()) ro.break_on = o->break_on;
    ro.step = o->step;
    ro.out = &std::cout;
    ro.in = &std::cin;
    actors::ReplayResult r;
    try {
      r = actors::replay_trace(o->trace, ro);
    } catch (const std::exception& e) {
      return usage_error(e.what());
    }
    std::cout << "replayed " << r.replayed << " messages (" << r.checked << " replies checked, "
              << r.steps << " complete steps); stopped: " << r.stopped_because << "\n";
    if (r.divergence) {
      std::cout << "first divergence at " << r.divergence->message << "\n  recorded: "
                << r.divergence->recorded << "\n  replayed: " << r.divergence->replayed << "\n";
      return 1;
    }
    std::cout << "no divergence\n";
    return 0;
  };
}

}  // namespace siesta::cli
