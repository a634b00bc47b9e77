// Public header of siesta::model: config, weights layout, safetensors and HF folders, presets,
// and the inference / training passes over the kernels::Ops table.
#pragma once

#include "siesta/model/config.hpp"
#include "siesta/model/folder.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/model/safetensors.hpp"
#include "siesta/model/training.hpp"
#include "siesta/model/weights.hpp"
