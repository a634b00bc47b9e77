// Public header of siesta::workflows: the YAML workflow schema, validation, the built-in
// default workflow, and the run-folder outputs (metrics, report, progress).
#pragma once

#include "siesta/workflows/check.hpp"
#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/load.hpp"
#include "siesta/workflows/metrics_writer.hpp"
#include "siesta/workflows/progress.hpp"
#include "siesta/workflows/run_report.hpp"
#include "siesta/workflows/spec.hpp"
#include "siesta/workflows/yaml_source.hpp"
