// Public header of siesta::actors: the CAF actors that run a colocated RL step.
#pragma once

#include "siesta/actors/selftest.hpp"
