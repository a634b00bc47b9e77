// Loads a workflow YAML document, keeping file/line/column for every error message.
#pragma once

#include <filesystem>
#include <string>

#include <yaml-cpp/yaml.h>

#include "siesta/workflows/diagnostics.hpp"

namespace siesta::workflows {

struct YamlSource {
  std::string origin;   // file path, or "<default>" for the built-in workflow
  std::string text;
  YAML::Node root;
};

// Throws WorkflowError for unreadable files, and ValidationError
// "FILE:LINE:COL: error: YAML syntax error: ..." for malformed YAML.
YamlSource load_yaml_file(const std::filesystem::path& path);
YamlSource load_yaml_text(const std::string& text, const std::string& origin);

// "FILE:LINE:COL" of a node (1-based), as editors expect.
std::string where(const YamlSource& src, const YAML::Node& node);

}  // namespace siesta::workflows
