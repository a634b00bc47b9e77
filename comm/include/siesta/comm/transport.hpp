// A group of ranks that can broadcast bytes: NCCL between GPUs, TCP loopback between CPU
// processes. The weight syncer is written once against this interface.
//
// Every call is collective: all ranks call it in the same order. Every wait is bounded by the
// transport's timeout; a lost peer or an abort() on any rank surfaces as a CommError on the
// others, never as a hang. After an error the transport is unusable (every call throws).
#pragma once

#include <cstddef>
#include <string>

#include "siesta/kernels/tensor.hpp"

namespace siesta::comm {

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Where this transport wants its bulk buffers (staging buckets): cuda:i for NCCL, cpu for host.
  virtual Device device() const = 0;

  // Root's `bytes` at `data` end up in every rank's `data`. `where` says where the buffer lives;
  // both transports accept host and device memory (one of them bounces through a copy).
  virtual void broadcast(void* data, size_t bytes, int root, Device where) = 0;
  virtual void barrier() = 0;
  // Tears the group down so that every peer's pending or next call fails with a CommError that
  // carries `reason` where the transport can deliver it. Never throws.
  virtual void abort(const std::string& reason) noexcept = 0;
  virtual bool aborted() const = 0;

  // ---- stream-ordered form (NCCL): the weight syncer's GPU pipeline uses it when true. -----
  virtual bool stream_ordered() const { return false; }
  // Enqueues a device-memory broadcast on `cuda_stream` (a cudaStream_t) and returns without
  // waiting for it.
  virtual void broadcast_on_stream(void* data, size_t bytes, int root, void* cuda_stream);
  // Waits for `cuda_event` (a cudaEvent_t) under the transport's watchdog: a peer error or the
  // timeout aborts the group and throws a CommError naming `what`.
  virtual void wait_event(void* cuda_event, const std::string& what);
};

}  // namespace siesta::comm
