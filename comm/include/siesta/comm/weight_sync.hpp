// The weight-sync protocol. The trainer side (WeightSender, on the broadcast root) casts named
// tensors to the engine dtype, lays them out in one byte stream cut into fixed-size buckets and
// broadcasts a manifest followed by the buckets. Each engine side (WeightReceiver) validates the
// manifest against its own named destination tensors, then receives every bucket into a staging
// buffer and unpacks it in place (the destinations keep their addresses).
//
// Two staging buckets per rank overlap pack, broadcast and unpack: CUDA streams and events when
// the transport is stream-ordered (NCCL), a pipeline thread otherwise. Staging is allocated at
// the start of a sync and released at its end; its peak is reported in SyncStats. (A sender or
// receiver keeps its CUDA streams, events and a few KiB of copy descriptors between syncs.)
//
// Failure: a manifest that any rank rejects, or a lost peer, ends the sync with a CommError on
// every rank; the receiver then reports weights_valid() == false until a later sync succeeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "siesta/comm/transport.hpp"
#include "siesta/kernels/tensor.hpp"

namespace siesta::comm {

struct NamedTensor {
  std::string name;
  TensorView view;  // F32, BF16 or F16; on the CPU or on a GPU
};

struct SyncOptions {
  DType engine_dtype = DType::BF16;      // sender: the dtype the engines hold
  size_t bucket_bytes = 256ull << 20;    // sender: bucket size (a multiple of 256 bytes)
  int root = 0;                          // the rank that holds the trainer's weights
  // World 1, sender with a local receiver: cast each source straight into its destination
  // (one pass over memory) instead of packing into a bucket and unpacking it again.
  bool fuse_local = true;
  // Called (on the syncing thread) once bucket i of n has gone through the transport here.
  std::function<void(size_t bucket, size_t num_buckets)> on_bucket;
};

struct SyncStats {
  size_t bytes = 0;               // payload moved, in the engine dtype
  size_t buckets = 0;
  size_t bucket_bytes = 0;
  double seconds = 0;
  double gbps() const { return seconds > 0 ? double(bytes) / seconds / 1e9 : 0; }
  size_t peak_staging_bytes = 0;  // staging buckets + copy descriptors, on the transport's device
  bool fused_local = false;       // true when the one-pass local path ran
};

class WeightReceiver;
struct DeviceCache;  // CUDA streams and events a sender/receiver keeps between syncs

// Trainer side; runs on the root rank.
class WeightSender {
 public:
  WeightSender(Transport& transport, SyncOptions opts = {});
  // Broadcasts `sources` (any float dtype, CPU or GPU). `local` is the engine hosted by the
  // root's own process, if any: with world 1 it is the only receiver.
  SyncStats send(const std::vector<NamedTensor>& sources, WeightReceiver* local = nullptr);

 private:
  Transport& t_;
  SyncOptions opts_;
  std::shared_ptr<DeviceCache> cache_;
};

// Engine side; every rank that hosts an engine has one.
class WeightReceiver {
 public:
  WeightReceiver(Transport& transport, std::vector<NamedTensor> destinations,
                 SyncOptions opts = {});
  // On a non-root rank: takes part in the root's send() and fills the destinations.
  SyncStats receive();
  bool weights_valid() const { return valid_; }
  void invalidate() { valid_ = false; }
  const std::vector<NamedTensor>& destinations() const { return dst_; }

 private:
  friend class WeightSender;
  Transport& t_;
  std::vector<NamedTensor> dst_;
  SyncOptions opts_;
  bool valid_ = false;
  std::shared_ptr<DeviceCache> cache_;
};

}  // namespace siesta::comm
