// Public header of siesta::engine: the model, the inference engine, the trainer, the server.
#pragma once

#include "siesta/model/config.hpp"
