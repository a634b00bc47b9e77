// Loads a workflow YAML document, keeping file/line/column for every error message.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include <yaml-cpp/yaml.h>

namespace siesta::workflows {

class WorkflowError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct YamlSource {
  std::string origin;   // file path, or "<default>" for the built-in workflow
  std::string text;
  YAML::Node root;
};

// Throws WorkflowError "FILE:LINE:COL: ..." for unreadable files and YAML syntax errors.
YamlSource load_yaml_file(const std::filesystem::path& path);
YamlSource load_yaml_text(const std::string& text, const std::string& origin);

// "FILE:LINE:COL" of a node (1-based), as editors expect.
std::string where(const YamlSource& src, const YAML::Node& node);

}  // namespace siesta::workflows
