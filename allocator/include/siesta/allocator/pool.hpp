// A sleep-capable memory pool: one per device. Allocations carry a tag; sleep(tags) releases
// their physical memory (optionally copying the content to a persistent host backup first)
// and wake(tags) maps fresh memory at the SAME addresses, restoring the content if it was
// offloaded. Addresses never change, so CUDA graphs and raw pointers survive any number of
// sleep/wake cycles. Thread-safe: one mutex guards the table.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "siesta/allocator/error.hpp"
#include "siesta/allocator/tag.hpp"
#include "siesta/kernels/tensor.hpp"

namespace siesta::allocator {

enum class SleepMode { Offload, Discard };  // Offload: copy to host backup first; Discard: drop

struct PoolOptions {
  Device device = Device::cpu();         // Device::cuda(i): driver VMM backend; cpu(): host backend
  uint64_t chunk_bytes = 1ull << 30;     // physical memory is mapped in chunks of this size
  uint64_t capacity_bytes = 0;           // budget for mapped bytes; 0 = whatever the device has
  uint64_t pinned_backup_bytes = 0;      // host backup allocated up front (it grows on need)
};

struct Allocation {
  void* ptr = nullptr;  // fixed for the allocation's whole life
  uint64_t bytes = 0;   // as requested
  Tag tag;
  std::string name;
};

struct DeviceMemory {
  uint64_t total_bytes = 0, free_bytes = 0, used_bytes = 0;
};

struct TagStats {
  Tag tag;
  uint64_t allocations = 0;
  uint64_t reserved_bytes = 0;   // address space held (rounded up to the granularity)
  uint64_t mapped_bytes = 0;     // physical memory behind it now
  uint64_t backed_up_bytes = 0;  // content held in the host backup while asleep
  bool sleeping = false;
};

struct PoolEvent {
  enum class Kind { Allocate, Free, Sleep, Wake } kind = Kind::Allocate;
  std::vector<Tag> tags;
  std::string name;                       // the allocation's name (Allocate, Free)
  SleepMode mode = SleepMode::Discard;    // Sleep only
  uint64_t bytes = 0;                     // mapped (Allocate, Wake) or released (Free, Sleep)
  uint64_t copied_bytes = 0;              // offloaded (Sleep) or restored (Wake)
  double duration_ms = 0;
  DeviceMemory before, after;             // device memory around the transition
};

struct PoolStats {
  std::vector<TagStats> tags;             // sorted by tag
  DeviceMemory device;                    // now
  uint64_t granularity_bytes = 0, chunk_bytes = 0;
  uint64_t backup_capacity_bytes = 0;     // host backup pool size (never shrinks)
  uint64_t backup_used_bytes = 0;
  std::optional<PoolEvent> last_transition;
};

class Pool {
 public:
  static std::unique_ptr<Pool> create(const PoolOptions& options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  Allocation allocate(uint64_t bytes, const Tag& tag, const std::string& name);
  void free(const Allocation& allocation);
  void sleep(const std::vector<Tag>& tags, SleepMode mode);
  void wake(const std::vector<Tag>& tags);
  bool is_sleeping(const Tag& tag) const;
  PoolStats stats() const;
  DeviceMemory device_memory() const;
  // Called after every successful transition, outside the pool's lock.
  void set_listener(std::function<void(const PoolEvent&)> listener);
  const PoolOptions& options() const;

  struct Impl;

 private:
  explicit Pool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

const char* to_string(SleepMode mode);       // "offload" / "discard"
const char* to_string(PoolEvent::Kind kind);  // "allocate" / "free" / "sleep" / "wake"

}  // namespace siesta::allocator
