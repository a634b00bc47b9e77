// The limits actor messaging is compared with, measured in the same run without CAF: what the
// same request/response costs between two plain threads of this process, and over a raw TCP
// socket on 127.0.0.1 to another process.
#pragma once

#include <cstdint>
#include <vector>

namespace siesta::bench::floors {

// Round trips (µs each) of a request/response handed between two threads by spinning on one
// atomic: the cache-line transfer floor of a cross-core request.
std::vector<double> spin_pingpong_us(int n);
// The same through a mutex and condition variables: the floor of a blocking wait (what a
// scoped_actor's receive does).
std::vector<double> condvar_pingpong_us(int n);
// Requests/s of an echo thread fed through two mutex+condvar queues, `window` in flight.
double queue_echo_per_s(int n, int window);

// A TCP echo server on 127.0.0.1 (ephemeral port) that echoes 16-byte messages, one connection
// after another, on its own thread until the process exits.
class TcpEchoServer {
 public:
  TcpEchoServer();   // throws std::runtime_error naming the failing call
  uint16_t port() const { return port_; }
  void serve_forever();   // blocks

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Round trips (µs each) of 16-byte messages to a TcpEchoServer (TCP_NODELAY).
std::vector<double> tcp_pingpong_us(uint16_t port, int n);
// Messages/s echoed by a TcpEchoServer with `window` messages in flight.
double tcp_pipelined_per_s(uint16_t port, int n, int window);

// Sorts v and returns its q-quantile (0.5 = median).
double quantile(std::vector<double>& v, double q);

}  // namespace siesta::bench::floors
