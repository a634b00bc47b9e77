// What one rank does in the bucket phase of a sync, and the two pipelines that do it: the host
// pipeline (a helper thread overlaps pack/unpack with the transport) and the device pipeline
// (CUDA streams and events around stream-ordered NCCL broadcasts).
#pragma once

#include <vector>

#include "manifest.hpp"
#include "siesta/comm/transport.hpp"
#include "siesta/comm/weight_sync.hpp"

namespace siesta::comm {

struct SyncPlan {
  const Manifest* m = nullptr;
  int root = 0;
  bool sending = false;                  // this rank packs the sources (it is the root)
  std::vector<const TensorView*> src;    // sender: sources in manifest order
  std::vector<const TensorView*> dst;    // destinations in manifest order; empty: none here
  bool fused = false;                    // world 1 with a local receiver: src -> dst directly
  const SyncOptions* opts = nullptr;
};

// Both fill stats.peak_staging_bytes and stats.buckets; both throw CommError.
void run_host_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats);
void run_device_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats);

}  // namespace siesta::comm
