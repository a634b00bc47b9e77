// `siesta run [workflow.yaml]`: runs a workflow (the built-in default when no file is given).
#include <csignal>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/workflows.hpp"
#include "siesta/workflows/check.hpp"
#include "siesta/workflows/runner.hpp"

namespace siesta::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_interrupt(int) {
  // A second Ctrl-C while the first one drains kills the run the ordinary way.
  if (g_stop.exchange(true)) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

struct RunArgs {
  std::string file;
  std::vector<std::string> overrides;
  std::string resume;
  bool print_default = false;
};

}  // namespace

Runner add_run(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "run", "Run a workflow YAML (without one: the built-in default, GPU-sized when a GPU is "
             "present, CPU-sized otherwise)");
  auto a = std::make_shared<RunArgs>();
  sub->add_option("workflow", a->file, "Workflow YAML file")->check(CLI::ExistingFile);
  sub->add_option("--set", a->overrides,
                  "Override a field, e.g. --set trainer.lr=1e-4 (repeatable; value read as YAML)");
  sub->add_option("--resume", a->resume, "Continue the run in RUN_DIR from its last checkpoint")
      ->check(CLI::ExistingDirectory);
  sub->add_flag("--print-default", a->print_default,
                "Print the built-in default workflow (for this machine) and exit");
  return [a] {
    const bool gpu = kernels::cuda_available();
    if (a->print_default) {
      try {
        std::cout << workflows::default_workflow_text(gpu, a->overrides);
      } catch (const workflows::ValidationError& e) {
        workflows::print_diagnostics(std::cerr, e.diagnostics());
        return workflows::kValidationExitCode;
      }
      return 0;
    }
    workflows::WorkflowSpec spec;
    workflows::RunOptions ro;
    try {
      if (!a->resume.empty()) {
        if (!a->file.empty() || !a->overrides.empty())
          return usage_error("--resume continues a run with the workflow saved in its folder; "
                             "give no workflow file or --set with it");
        spec = workflows::workflow_of_run(a->resume);
        ro.resume_dir = a->resume;
      } else if (!a->file.empty()) {
        spec = workflows::load_workflow(a->file, a->overrides);
      } else {
        spec = workflows::resolve_default(gpu, a->overrides);
        std::cerr << "siesta run: no workflow given; running the built-in default ("
                  << (gpu ? "GPU" : "CPU") << "-sized; `siesta run --print-default` shows it)\n";
      }
    } catch (const workflows::ValidationError& e) {
      workflows::print_diagnostics(std::cerr, e.diagnostics());
      return workflows::kValidationExitCode;
    } catch (const workflows::WorkflowError& e) {
      return usage_error(e.what());
    }
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    ro.stop_requested = &g_stop;
    auto res = workflows::run_workflow(spec, ro);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    std::cerr << "siesta run: " << res.steps_done << " steps in " << res.run_dir.string();
    if (res.first_eval_reward >= 0)
      std::cerr << "; eval reward " << res.first_eval_reward << " -> " << res.last_eval_reward;
    std::cerr << "\n";
    if (res.exit_code != 0) std::cerr << "siesta run: " << res.error << "\n";
    return res.exit_code;
  };
}

}  // namespace siesta::cli
