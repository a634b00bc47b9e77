// The memory manager actor (one per device).
#pragma once

#include <functional>
#include <memory>

#include "siesta/actors/protocol.hpp"
#include "siesta/actors/tracing.hpp"

namespace siesta::actors {

struct MemoryManagerConfig {
  int rank = 0;
  uint64_t capacity_bytes = 0;                 // the device budget
  std::function<uint64_t()> device_used;       // measured device memory in use (may be empty)
  std::shared_ptr<Tracing> tracing;
};

memory_actor::behavior_type memory_manager(memory_actor::pointer self, MemoryManagerConfig cfg);

}  // namespace siesta::actors
