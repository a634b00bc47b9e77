// Reading YAML text with positions, and the text form of diagnostics.
#include "siesta/workflows/yaml_source.hpp"

#include <fstream>
#include <sstream>

namespace siesta::workflows {

std::string Diagnostic::to_string() const {
  std::string s = origin;
  if (line > 0) s += ":" + std::to_string(line) + ":" + std::to_string(column);
  s += ": error: ";
  if (!path.empty()) s += path + ": ";
  s += message;
  if (!allowed.empty()) s += " (allowed: " + allowed + ")";
  return s;
}

static std::string join_lines(const std::vector<Diagnostic>& ds) {
  std::string s;
  for (const auto& d : ds) s += (s.empty() ? "" : "\n") + d.to_string();
  return s;
}

ValidationError::ValidationError(std::vector<Diagnostic> diagnostics)
    : WorkflowError(join_lines(diagnostics)), diagnostics_(std::move(diagnostics)) {}

YamlSource load_yaml_text(const std::string& text, const std::string& origin) {
  YamlSource s{origin, text, {}};
  try {
    s.root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Diagnostic d;
    d.origin = origin;
    d.line = e.mark.is_null() ? 0 : e.mark.line + 1;
    d.column = e.mark.is_null() ? 0 : e.mark.column + 1;
    d.message = "YAML syntax error: " + e.msg;
    if (d.line > 0) {
      std::istringstream lines(text);
      for (int i = 0; i < d.line && std::getline(lines, d.source_line); ++i) {
      }
      if (!d.source_line.empty() && d.source_line.back() == '\r') d.source_line.pop_back();
    }
    throw ValidationError({d});
  }
  return s;
}

YamlSource load_yaml_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) {
    std::error_code ec;
    const char* why = !std::filesystem::exists(path, ec)        ? "no such file"
                      : std::filesystem::is_directory(path, ec) ? "it is a folder"
                                                                 : "permission denied or unreadable";
    throw WorkflowError(path.string() + ": error: cannot open workflow file (" + why + ")");
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return load_yaml_text(ss.str(), path.string());
}

std::string where(const YamlSource& src, const YAML::Node& node) {
  auto m = node.Mark();
  if (m.is_null()) return src.origin;
  return src.origin + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

}  // namespace siesta::workflows
