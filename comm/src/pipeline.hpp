// What one rank does in the bucket phase of a sync, and the two pipelines that do it: the host
// pipeline (a helper thread overlaps pack/unpack with the transport) and the device pipeline
// (CUDA streams and events around stream-ordered NCCL broadcasts).
#pragma once

#include <memory>
#include <vector>

#include "manifest.hpp"
#include "siesta/comm/transport.hpp"
#include "siesta/comm/weight_sync.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace siesta::comm {

struct SyncPlan {
  const Manifest* m = nullptr;
  int root = 0;
  bool sending = false;                  // this rank packs the sources (it is the root)
  std::vector<const TensorView*> src;    // sender: sources in manifest order
  std::vector<const TensorView*> dst;    // destinations in manifest order; empty: none here
  bool fused = false;                    // world 1 with a local receiver: src -> dst directly
  const SyncOptions* opts = nullptr;
  std::shared_ptr<DeviceCache>* device_cache = nullptr;  // the sender's/receiver's, reused
};

#ifdef SIESTA_WITH_CUDA
struct CopySeg;
// Creating streams and events costs about as much as syncing a few MB, so a sender/receiver
// keeps its own between syncs, with a grow-only buffer for the copy descriptors.
struct DeviceCache {
  explicit DeviceCache(int device);
  ~DeviceCache();
  DeviceCache(const DeviceCache&) = delete;
  DeviceCache& operator=(const DeviceCache&) = delete;
  void drain() noexcept;  // waits for the three streams
  int device = -1;
  cudaStream_t pack = nullptr, comm = nullptr, unpack = nullptr;
  cudaEvent_t packed[2] = {}, sent[2] = {}, freed[2] = {};
  CopySeg* descriptors = nullptr;
  size_t descriptor_bytes = 0;
};
#endif

// Both fill stats.peak_staging_bytes and stats.buckets; both throw CommError.
void run_host_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats);
void run_device_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats);

}  // namespace siesta::comm
