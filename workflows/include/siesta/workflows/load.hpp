// Turning workflow YAML (a file, the built-in default, --set overrides) into a validated
// WorkflowSpec, and back into YAML.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "siesta/workflows/spec.hpp"
#include "siesta/workflows/yaml_source.hpp"

namespace siesta::workflows {

// Reads `src`, then applies each override ("trainer.lr=1e-4", "algorithm.stages[1].steps=50";
// the value is read as YAML), then checks the cross-field rules. Throws ValidationError with
// every problem found, in file order, then override order.
WorkflowSpec parse_workflow(const YamlSource& src, const std::vector<std::string>& overrides = {});
WorkflowSpec load_workflow(const std::filesystem::path& file,
                           const std::vector<std::string>& overrides = {});
WorkflowSpec load_workflow_text(const std::string& text, const std::string& origin,
                                const std::vector<std::string>& overrides = {});

// The built-in workflow: configs/workflows/default-cpu.yaml (sized for a 2-core CPU), or
// configs/workflows/grpo-small-gpu.yaml when a GPU is present; embedded at build time.
const std::string& default_workflow_yaml(bool gpu_present = false);
// The built-in workflow parsed (origin "<default>" or "<default-gpu>") with overrides applied.
WorkflowSpec resolve_default(bool gpu_present, const std::vector<std::string>& overrides = {});

// The resolved spec as YAML that parses back to the same spec; with comments, every key
// carries its meaning and allowed values (siesta run --print-default, the run folder).
std::string to_yaml(const WorkflowSpec& spec, bool comments = true);

// Markdown tables of every key, its type, default and allowed values (README reference).
std::string schema_reference_markdown();

}  // namespace siesta::workflows
