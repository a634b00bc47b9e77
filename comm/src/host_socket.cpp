// poll()-bounded socket helpers for the host transport (see host_socket.hpp).
#include "host_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "siesta/comm/error.hpp"

namespace siesta::comm::net {

namespace {
std::string err_text() { return std::strerror(errno); }

sockaddr_in make_addr(const std::string& host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1)
    throw CommError("host transport: '" + host + "' is not an IPv4 address (e.g. 127.0.0.1)");
  return a;
}

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Large socket buffers let a bucket stream without a round trip per few hundred KiB.
  int buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}
}  // namespace

void send_all(int fd, const void* data, size_t n, int timeout_ms, const std::string& peer,
              void (*on_readable)(int, const std::string&)) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    pollfd pfd{fd, short(POLLOUT | (on_readable ? POLLIN : 0)), 0};
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw CommError("host transport: poll on " + peer + " failed: " + err_text());
    }
    if (r == 0)
      throw CommError("host transport: sending to " + peer + " made no progress for " +
                      std::to_string(timeout_ms) + " ms (peer stuck or gone)");
    if ((pfd.revents & POLLIN) && on_readable) on_readable(fd, peer);
    if (pfd.revents & (POLLERR | POLLHUP))
      throw CommError("host transport: connection to " + peer + " was closed (peer gone)");
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      throw CommError("host transport: sending to " + peer + " failed: " + err_text() +
                      " (peer gone)");
    }
    p += w;
    n -= size_t(w);
  }
}

void recv_all(int fd, void* data, size_t n, int timeout_ms, const std::string& peer) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw CommError("host transport: poll on " + peer + " failed: " + err_text());
    }
    if (r == 0)
      throw CommError("host transport: waited " + std::to_string(timeout_ms) +
                      " ms for " + peer + " without receiving anything (peer stuck or gone)");
    ssize_t got = ::recv(fd, p, n, MSG_DONTWAIT);
    if (got == 0)
      throw CommError("host transport: " + peer + " closed the connection (peer gone)");
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      throw CommError("host transport: receiving from " + peer + " failed: " + err_text() +
                      " (peer gone)");
    }
    p += got;
    n -= size_t(got);
  }
}

int listen_on(const std::string& host, uint16_t port, uint16_t* bound_port) {
  auto a = make_addr(host, port);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw CommError("host transport: socket() failed: " + err_text());
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
    std::string e = err_text();
    ::close(fd);
    throw CommError("host transport: cannot listen on " + host + ":" + std::to_string(port) +
                    ": " + e);
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *bound_port = ntohs(a.sin_port);
  return fd;
}

int connect_to(const std::string& host, uint16_t port, int timeout_ms) {
  auto a = make_addr(host, port);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw CommError("host transport: socket() failed: " + err_text());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      tune(fd);
      return fd;
    }
    last = err_text();
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // rank 0 may not listen yet
  }
  throw CommError("host transport: could not connect to rank 0 at " + host + ":" +
                  std::to_string(port) + " within " + std::to_string(timeout_ms) +
                  " ms (last error: " + last + ")");
}

int accept_within(int listen_fd, int timeout_ms) {
  pollfd pfd{listen_fd, POLLIN, 0};
  int r;
  do r = ::poll(&pfd, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return -1;
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) tune(fd);
  return fd;
}

// close(), not shutdown(): a forked child may share the socket (a listener bound before the
// fork), and shutdown would end it for every holder.
void close_fd(int fd) noexcept {
  if (fd >= 0) ::close(fd);
}

void shutdown_write(int fd) noexcept {
  if (fd >= 0) ::shutdown(fd, SHUT_WR);
}

}  // namespace siesta::comm::net
