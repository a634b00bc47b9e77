// Blocking-with-timeout socket I/O for the host transport: every wait is a poll() bounded by the
// I/O timeout, so a dead or stuck peer becomes an error instead of a hang.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace siesta::comm::net {

// Sends all n bytes to fd (MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE). Throws
// CommError naming `peer` when no progress is made for timeout_ms, the peer closed, or the
// peer sent something while we were writing (the caller's on_readable decides what that means).
void send_all(int fd, const void* data, size_t n, int timeout_ms, const std::string& peer,
              void (*on_readable)(int fd, const std::string& peer) = nullptr);
// Receives exactly n bytes. Throws CommError on timeout or when the peer closed.
void recv_all(int fd, void* data, size_t n, int timeout_ms, const std::string& peer);

int listen_on(const std::string& host, uint16_t port, uint16_t* bound_port);
// Connects, retrying while the listener is not up yet, until timeout_ms.
int connect_to(const std::string& host, uint16_t port, int timeout_ms);
// Waits up to timeout_ms for a connection; returns -1 on timeout.
int accept_within(int listen_fd, int timeout_ms);
void close_fd(int fd) noexcept;
void shutdown_write(int fd) noexcept;

}  // namespace siesta::comm::net
