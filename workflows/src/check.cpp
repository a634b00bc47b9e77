// Validation results as values, their compiler-style printing, and the --print-default text.
#include "siesta/workflows/check.hpp"

#include <set>

#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

namespace {

template <class F>
CheckedWorkflow checked(const std::string& origin, F&& parse) {
  CheckedWorkflow out;
  try {
    out.spec = parse();
  } catch (const ValidationError& e) {
    out.diagnostics = e.diagnostics();
  } catch (const WorkflowError& e) {
    // An unreadable file: its message already starts with the path.
    Diagnostic d;
    d.origin = origin;
    std::string what = e.what();
    const std::string prefix = origin + ": error: ";
    d.message = what.starts_with(prefix) ? what.substr(prefix.size()) : what;
    out.diagnostics.push_back(std::move(d));
  }
  return out;
}

}  // namespace

CheckedWorkflow check_workflow_file(const std::filesystem::path& file,
                                    const std::vector<std::string>& overrides) {
  return checked(file.string(), [&] { return load_workflow(file, overrides); });
}

CheckedWorkflow check_workflow_text(const std::string& text, const std::string& origin,
                                    const std::vector<std::string>& overrides) {
  return checked(origin, [&] { return load_workflow_text(text, origin, overrides); });
}

CheckedWorkflow check_default_workflow(bool has_gpu, const std::vector<std::string>& overrides) {
  return checked(has_gpu ? "<default-gpu>" : "<default>",
                 [&] { return resolve_default(has_gpu, overrides); });
}

std::string format_diagnostics(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  std::set<std::string> files;
  bool overrides = false;
  for (const auto& d : diagnostics) {
    out += d.to_string() + "\n";
    if (d.source_index > 0) overrides = true;
    else files.insert(d.origin);
    if (d.source_line.empty() || d.line <= 0) continue;
    const std::string num = std::to_string(d.line);
    const std::string pad(num.size(), ' ');
    // Tabs stay tabs in the caret line so that the caret lands under the column.
    std::string under;
    for (int i = 0; i + 1 < d.column && size_t(i) < d.source_line.size(); ++i)
      under += d.source_line[size_t(i)] == '\t' ? '\t' : ' ';
    out += "    " + num + " | " + d.source_line + "\n";
    out += "    " + pad + " | " + under + "^\n";
  }
  if (diagnostics.empty()) return out;
  std::string where;
  for (const auto& f : files) where += (where.empty() ? "" : ", ") + f;
  if (overrides) where += where.empty() ? "the --set overrides" : " and the --set overrides";
  out += std::to_string(diagnostics.size()) + (diagnostics.size() == 1 ? " error" : " errors") +
         " in " + where + "; nothing was started\n";
  return out;
}

void print_diagnostics(std::ostream& out, const std::vector<Diagnostic>& diagnostics) {
  out << format_diagnostics(diagnostics) << std::flush;
}

std::string default_workflow_text(bool has_gpu, const std::vector<std::string>& overrides) {
  const std::string file = has_gpu ? "configs/workflows/grpo-small-gpu.yaml"
                                   : "configs/workflows/default-cpu.yaml";
  std::string head =
      "# The built-in workflow of `siesta run` with no file" +
      std::string(has_gpu ? " (a GPU is present)" : " (no GPU is present)") + ": " + file +
      ",\n# with every key resolved. Save it, edit it, and run it with `siesta run FILE`;\n"
      "# or change single keys with `siesta run --set key=value` (e.g. --set trainer.lr=1e-4).\n";
  if (!overrides.empty()) {
    head += "# Overrides applied:";
    for (const auto& o : overrides) head += " --set " + o;
    head += "\n";
  }
  return head + to_yaml(resolve_default(has_gpu, overrides), true);
}

}  // namespace siesta::workflows
