// NCCL broadcast between GPUs, one process per GPU. The communicator is created from a 128-byte
// ncclUniqueId that rank 0 makes (make_unique_id) and a control plane ships to the others.
// Init and collectives are non-blocking; every wait polls ncclCommGetAsyncError and aborts the
// communicator (ncclCommAbort) after the timeout, so a dead peer ends in a CommError on every
// rank instead of a hang. NCCL_NVLS_ENABLE=0 is set unless the environment already says.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "siesta/comm/transport.hpp"

namespace siesta::comm {

using NcclUniqueId = std::array<std::byte, 128>;

// Throws CommError in a build without CUDA, or when NCCL cannot make an id.
NcclUniqueId make_unique_id();

struct NcclOptions {
  int timeout_ms = 60000;  // longest wait for init or for one collective to make progress
};

class NcclTransport final : public Transport {
 public:
  // Starts creating the communicator on `cuda_device` and returns; the first collective waits
  // (under the watchdog) for every rank to have joined.
  NcclTransport(const NcclUniqueId& id, int rank, int world_size, int cuda_device,
                NcclOptions opts = {});
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  Device device() const override { return Device::cuda(cuda_device_); }
  void broadcast(void* data, size_t bytes, int root, Device where) override;
  void barrier() override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override { return !abort_reason_.empty(); }

  bool stream_ordered() const override { return true; }
  void broadcast_on_stream(void* data, size_t bytes, int root, void* cuda_stream) override;
  void wait_event(void* cuda_event, const std::string& what) override;

 private:
  struct State;
  void wait_ready();
  void check_usable() const;
  int rank_ = 0, world_ = 1, cuda_device_ = 0;
  NcclOptions opts_;
  std::unique_ptr<State> s_;
  std::string abort_reason_;
};

}  // namespace siesta::comm
