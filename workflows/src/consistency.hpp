// Rules that involve more than one field (kv_cache_bytes vs gpu_memory_utilization, cpu vs
// GPU-only settings, ...), checked on the typed spec after the file and the overrides are read.
#pragma once

#include <string>
#include <vector>

#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/spec.hpp"
#include "yaml_reader.hpp"

namespace siesta::workflows::detail {

// Each problem is reported at the location of the field that was set last (a --set override
// names itself); `origin` is used for fields left at their defaults. A rule is not reported
// for a path that `out` already holds an error for.
void check_consistency(const WorkflowSpec& spec, const LocationMap& locations,
                       const std::string& origin, std::vector<Diagnostic>& out);

}  // namespace siesta::workflows::detail
