// Ops::sample_enqueue's result slots, shared by both backends: slot `slot` of a backend's
// array, or a KernelError that says which slots exist.
#pragma once

#include <string>

#include "siesta/kernels/error.hpp"
#include "siesta/kernels/ops.hpp"

namespace siesta::kernels {

template <class Slot>
Slot& sample_slot_at(Slot (&slots)[Ops::kSampleSlots], int slot, const char* op) {
  if (slot < 0 || slot >= Ops::kSampleSlots)
    throw KernelError(std::string(op) + ": slot " + std::to_string(slot) + " (allowed: 0.." +
                      std::to_string(Ops::kSampleSlots - 1) + ")");
  return slots[slot];
}

}  // namespace siesta::kernels
