// Parse, override, check: the one path every workflow takes before anything starts.
#include "siesta/workflows/load.hpp"

#include <algorithm>
#include <string_view>
#include <tuple>

#include "consistency.hpp"
#include "yaml_reader.hpp"

namespace siesta::workflows {

namespace {

// "trainer.lr=1e-4" -> {trainer: {lr: 1e-4}}; "algorithm.stages[1].steps=5" ->
// {algorithm: {stages: {1: {steps: 5}}}}. Problems with the override's shape go to `out`.
std::optional<YAML::Node> override_tree(const std::string& text, int index,
                                        std::vector<Diagnostic>& out) {
  auto fail = [&](const std::string& path, const std::string& msg, const std::string& allowed) {
    Diagnostic d;
    d.origin = "--set " + text;
    d.source_index = index;
    d.path = path;
    d.message = msg;
    d.allowed = allowed;
    out.push_back(std::move(d));
    return std::nullopt;
  };
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return fail("", "an override is a dotted key path, '=' and a value",
                "--set path.to.key=value, e.g. --set trainer.lr=1e-4");
  std::string path = text.substr(0, eq);
  std::string dotted;
  for (char c : path) {
    if (c == '[') dotted += '.';
    else if (c != ']') dotted += c;
  }
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    auto dot = dotted.find('.', start);
    parts.push_back(dotted.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); }))
    return fail(path, "empty key in the path", "keys separated by '.', e.g. engine.sleep_level.train");
  YAML::Node node;
  try {
    node = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return fail(path, "the value is not valid YAML: " + e.msg, "");
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = node;
    node = parent;
  }
  return node;
}

// The text of each diagnostic's line, for the caret display of format_diagnostics.
void attach_source_lines(const YamlSource& src, std::vector<Diagnostic>& diags) {
  std::vector<std::string_view> lines;
  std::string_view text = src.text;
  for (size_t start = 0; start <= text.size();) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(start, nl - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    start = nl + 1;
  }
  for (auto& d : diags)
    if (d.origin == src.origin && d.line > 0 && size_t(d.line) <= lines.size())
      d.source_line = std::string(lines[size_t(d.line) - 1]);
}

}  // namespace

WorkflowSpec parse_workflow(const YamlSource& src, const std::vector<std::string>& overrides) {
  WorkflowSpec spec;
  std::vector<Diagnostic> diags;
  detail::LocationMap locations;
  detail::YamlReader(src.origin, true, 0, diags, locations).read(src.root, spec);
  for (size_t i = 0; i < overrides.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    if (auto tree = override_tree(overrides[i], index, diags))
      detail::YamlReader("--set " + overrides[i], false, index, diags, locations)
          .read(*tree, spec);
  }
  detail::check_consistency(spec, locations, src.origin, diags);
  if (!diags.empty()) {
    attach_source_lines(src, diags);
    std::stable_sort(diags.begin(), diags.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.source_index, a.line, a.column) < std::tie(b.source_index, b.line, b.column);
    });
    throw ValidationError(std::move(diags));
  }
  return spec;
}

WorkflowSpec load_workflow(const std::filesystem::path& file,
                           const std::vector<std::string>& overrides) {
  return parse_workflow(load_yaml_file(file), overrides);
}

WorkflowSpec load_workflow_text(const std::string& text, const std::string& origin,
                                const std::vector<std::string>& overrides) {
  return parse_workflow(load_yaml_text(text, origin), overrides);
}

WorkflowSpec resolve_default(bool gpu_present, const std::vector<std::string>& overrides) {
  return load_workflow_text(default_workflow_yaml(gpu_present),
                            gpu_present ? "<default-gpu>" : "<default>", overrides);
}

}  // namespace siesta::workflows
