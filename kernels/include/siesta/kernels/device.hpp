// What the machine offers: CUDA driver/runtime, GPUs and their memory, host memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace siesta::kernels {

struct GpuInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  int multiprocessors = 0;
};

struct CudaStatus {
  bool compiled_in = false;     // built with SIESTA_WITH_CUDA
  int runtime_version = 0;      // e.g. 13000
  int driver_version = 0;       // 0 when no driver is installed
  std::string error;            // why no GPU can be used, empty when one can
  std::vector<GpuInfo> gpus;
};

// Never throws: a machine without a driver reports it in CudaStatus::error.
CudaStatus cuda_status();

// True when at least one CUDA device can be used by this build.
bool cuda_available();

struct HostMemory {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};
HostMemory host_memory();

// Resident set size of this process, in bytes (from /proc/self/statm).
uint64_t process_rss_bytes();

}  // namespace siesta::kernels
