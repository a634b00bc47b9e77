// Validation as a value, for the CLI: every problem of a workflow (its file, the --set
// overrides and the cross-field rules) as a list of diagnostics, and how to print them.
// Nothing may start unless ok(); `siesta run` then exits with kValidationExitCode (2).
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/spec.hpp"

namespace siesta::workflows {

struct CheckedWorkflow {
  std::optional<WorkflowSpec> spec;     // set exactly when diagnostics is empty
  std::vector<Diagnostic> diagnostics;  // file order, then override order
  bool ok() const { return spec.has_value(); }
};

// As load_workflow / load_workflow_text / resolve_default, but problems are returned instead of
// thrown; an unreadable file is a diagnostic without a position.
CheckedWorkflow check_workflow_file(const std::filesystem::path& file,
                                    const std::vector<std::string>& overrides = {});
CheckedWorkflow check_workflow_text(const std::string& text, const std::string& origin,
                                    const std::vector<std::string>& overrides = {});
CheckedWorkflow check_default_workflow(bool has_gpu, const std::vector<std::string>& overrides = {});

// One diagnostic per entry, as compilers print them:
//   run.yaml:5:3: error: trainer.lrr: unknown key; did you mean 'lr'? (allowed: optimizer, lr, ...)
//       5 |   lrr: 1e-3
//         |   ^
// then "N error(s) in <origins>; nothing was started". Source lines appear where known.
std::string format_diagnostics(const std::vector<Diagnostic>& diagnostics);
void print_diagnostics(std::ostream& out, const std::vector<Diagnostic>& diagnostics);

// `siesta run --print-default [--set ...]`: the built-in workflow that `siesta run` with no
// file would run (the GPU one when has_gpu), with the overrides applied, resolved with every
// key, its allowed values and its meaning. Throws ValidationError for a bad override.
std::string default_workflow_text(bool has_gpu, const std::vector<std::string>& overrides = {});

}  // namespace siesta::workflows
