// The two things a backend does to memory, vLLM-style: create-and-map and unmap-and-release,
// plus the offload/restore copies between a region and its host backup. The pool owns the
// table and the rules; backends only move memory.
#pragma once

#include <cstdint>
#include <string>

#include "region.hpp"
#include "siesta/allocator/pool.hpp"

namespace siesta::allocator {

// Thrown by a backend when the device has no physical memory for a mapping. The backend has
// already undone its partial work on that region; the pool undoes the rest of the transition.
struct DeviceOutOfMemory {
  uint64_t requested_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual uint64_t granularity() const = 0;
  virtual std::string describe() const = 0;  // "cuda:0 (NVIDIA H100 ...)" or "cpu"
  virtual DeviceMemory device_memory() const = 0;

  // Waits for work the user queued on the device, which may still touch memory about to be
  // copied out or released.
  virtual void synchronize() = 0;
  virtual void* reserve(uint64_t bytes) = 0;                // address space only
  virtual void unreserve(void* ptr, uint64_t bytes) noexcept = 0;
  virtual void map(Region& r) = 0;                          // all chunks; throws DeviceOutOfMemory
  virtual void release(Region& r) = 0;                      // all mapped chunks
  // Copies r's content into r.backup, releasing each chunk once its copy has landed.
  virtual void offload(Region& r) = 0;
  // Maps r again and copies r.backup back; throws DeviceOutOfMemory with r left released.
  virtual void restore(Region& r) = 0;

  // Host memory for the backup pool (pinned for CUDA), allocated rarely and kept.
  virtual char* alloc_backup(uint64_t bytes) = 0;
  virtual void free_backup(char* ptr, uint64_t bytes) noexcept = 0;
};

std::unique_ptr<Backend> make_host_backend(uint64_t capacity_bytes);
#ifdef SIESTA_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend(int device);
#endif

}  // namespace siesta::allocator
