// Broadcast between processes on one machine over TCP loopback: rank 0 listens, ranks 1..N-1
// connect and introduce themselves (rank, world, session id). Root streams bytes to every peer;
// a broadcast from another root is relayed through rank 0. Every connect/send/recv is bounded
// by a timeout, so a killed peer yields a CommError within a bounded time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "siesta/comm/transport.hpp"

namespace siesta::comm {

struct HostTransportOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;               // rank 0 may pass 0 to take a free port (HostListener::port())
  uint64_t session_id = 0;         // peers of another session are refused at the handshake
  int connect_timeout_ms = 10000;  // all peers must have joined within this
  int io_timeout_ms = 10000;       // longest wait for any progress on a send or receive
};

// Rank 0's listening socket, bound before the peers are started so they know the port.
class HostListener {
 public:
  explicit HostListener(const std::string& host = "127.0.0.1", uint16_t port = 0);
  ~HostListener();
  HostListener(HostListener&& o) noexcept;
  HostListener& operator=(HostListener&&) = delete;
  HostListener(const HostListener&) = delete;
  uint16_t port() const { return port_; }
  int release_fd();  // hands the socket over (used by HostTransport::serve)

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

class HostTransport final : public Transport {
 public:
  // Rank 0: accepts world-1 peers on `listener` (blocks until all joined or connect timeout).
  static std::unique_ptr<HostTransport> serve(HostListener listener, int world_size,
                                              const HostTransportOptions& opts);
  // Rank 1..world-1: connects to opts.host:opts.port, retrying until the connect timeout.
  static std::unique_ptr<HostTransport> join(int rank, int world_size,
                                             const HostTransportOptions& opts);
  ~HostTransport() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  Device device() const override { return Device::cpu(); }
  void broadcast(void* data, size_t bytes, int root, Device where) override;
  void barrier() override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override { return !abort_reason_.empty(); }

 private:
  HostTransport(int rank, int world, HostTransportOptions opts);
  void broadcast_host(void* data, size_t bytes, int root);
  void check_usable() const;
  [[noreturn]] void fail(const std::string& what);

  int rank_ = 0, world_ = 1;
  HostTransportOptions opts_;
  std::vector<int> peer_fd_;  // rank 0: fd per rank (index 0 unused); others: [0] = rank 0
  uint64_t seq_ = 0;          // frames carry a sequence number: a desync is detected, not absorbed
  std::string abort_reason_;
  friend struct HostWire;
};

}  // namespace siesta::comm
