// The limits the engine benchmarks are compared with, measured in the same run:
//   pinned host<->device copy bandwidth (one cudaMemcpyAsync of 2 GiB of cudaHostAlloc memory),
//   HBM bandwidth (one device-to-device cudaMemcpyAsync of 2 GiB, bytes read + written),
//   the driver's own map / unmap cost of a number of bytes (cuMemCreate + cuMemMap +
//   cuMemSetAccess, then cuMemUnmap + cuMemRelease, in chunks, with no pool around it).
// Without a GPU (--quick runs on the CPU backend) the copies are memcpy between resident host
// buffers and there is no map floor.
#pragma once

#include <cstdint>
#include <string>

#include "harness.hpp"

namespace siesta::bench::limits {

// GB/s (1e9 bytes per second) of one direction of a pinned copy; memcpy on the CPU.
double pinned_copy_gbps(const Options& o, bool cuda, bool to_device);
// GB/s of a device-to-device copy, bytes read + written; memcpy (read + written) on the CPU.
double hbm_gbps(const Options& o, bool cuda);

struct MapFloor {
  double map_ms = 0, release_ms = 0;
};
// The driver's cost of mapping / releasing `bytes` in chunks of `chunk` on cuda:0 (median of
// the harness's repeats); zeros without CUDA.
MapFloor vmm_floor(const Options& o, uint64_t bytes, uint64_t chunk);

// "NVIDIA H100 80GB HBM3" or "cpu".
std::string device_name(bool cuda);

}  // namespace siesta::bench::limits
