// Validation errors of a workflow: each says where (file:line:col, or the --set override),
// which key, what is wrong and what is allowed. All of them are collected before throwing.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace siesta::workflows {

// The CLI exits with this code when a workflow does not validate.
inline constexpr int kValidationExitCode = 2;

class WorkflowError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Diagnostic {
  std::string origin;   // file path, "<default>", or "--set path=value"
  int line = 0;         // 1-based; 0 when the origin has no position (overrides)
  int column = 0;
  std::string path;     // dotted key path, e.g. "trainer.lr"; empty for YAML syntax errors
  std::string message;  // what is wrong
  std::string allowed;  // what would be accepted; may be empty
  int source_index = 0; // 0 = the file, 1.. = the n-th override (keeps them in command order)
  std::string source_line;  // the file's text at `line`, when known (for a caret display)

  // "FILE:LINE:COL: error: path: message (allowed: ...)"
  std::string to_string() const;
};

class ValidationError : public WorkflowError {
 public:
  explicit ValidationError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace siesta::workflows
