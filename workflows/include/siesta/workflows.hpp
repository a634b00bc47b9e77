// Public header of siesta::workflows: the YAML workflow schema, validation and the runner.
#pragma once

#include "siesta/workflows/yaml_source.hpp"
