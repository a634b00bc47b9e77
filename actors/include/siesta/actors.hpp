// Public header of siesta::actors: the CAF actors that run a colocated RL step, and the
// CAF-free state machines and trace tools they share with `siesta replay`.
#pragma once

#include "siesta/actors/engine_lifecycle.hpp"
#include "siesta/actors/memory_budget.hpp"
#include "siesta/actors/replay.hpp"
#include "siesta/actors/selftest.hpp"
#include "siesta/actors/step_protocol.hpp"
#include "siesta/actors/trace.hpp"
#include "siesta/actors/trace_tools.hpp"
