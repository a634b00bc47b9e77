#include "siesta/workflows/yaml_source.hpp"

#include <fstream>
#include <sstream>

namespace siesta::workflows {

YamlSource load_yaml_text(const std::string& text, const std::string& origin) {
  YamlSource s{origin, text, {}};
  try {
    s.root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw WorkflowError(origin + ":" + std::to_string(e.mark.line + 1) + ":" +
                        std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  return s;
}

YamlSource load_yaml_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw WorkflowError(path.string() + ": cannot open workflow file");
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
