#include "floors.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace siesta::bench::floors {

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

[[noreturn]] void sys_fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Spins briefly, then yields: on a box with fewer free cores than spinning threads a pure
// spin would measure the scheduler's time slice instead of the handoff.
template <class Pred>
void spin_until(Pred done) {
  for (int i = 0; !done(); ++i)
    if (i > 2000) std::this_thread::yield();
}

class Queue {
 public:
  void push(int64_t x) {
    {
      std::lock_guard<std::mutex> l(mu_);
      q_.push_back(x);
    }
    cv_.notify_one();
  }
  int64_t pop() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !q_.empty(); });
    int64_t x = q_.front();
    q_.pop_front();
    return x;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int64_t> q_;
};

void write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n) {
    ssize_t k = ::write(fd, c, n);
    if (k <= 0) sys_fail("tcp write");
    c += k;
    n -= size_t(k);
  }
}

bool read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n) {
    ssize_t k = ::read(fd, c, n);
    if (k == 0) return false;
    if (k < 0) sys_fail("tcp read");
    c += k;
    n -= size_t(k);
  }
  return true;
}

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) sys_fail("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) sys_fail("connect 127.0.0.1");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

std::vector<double> spin_pingpong_us(int n) {
  std::atomic<int64_t> flag{0};
  std::thread server([&] {
    for (int64_t i = 0; i < n; ++i) {
      spin_until([&] { return flag.load(std::memory_order_acquire) == 2 * i + 1; });
      flag.store(2 * i + 2, std::memory_order_release);
    }
  });
  std::vector<double> rtt;
  rtt.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    flag.store(2 * i + 1, std::memory_order_release);
    spin_until([&] { return flag.load(std::memory_order_acquire) == 2 * i + 2; });
    rtt.push_back(us_since(t0));
  }
  server.join();
  return rtt;
}

std::vector<double> condvar_pingpong_us(int n) {
  Queue req, rep;
  std::thread server([&] {
    for (int i = 0; i < n; ++i) rep.push(req.pop());
  });
  std::vector<double> rtt;
  rtt.reserve(size_t(n));
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    req.push(i);
    rep.pop();
    rtt.push_back(us_since(t0));
  }
  server.join();
  return rtt;
}

double queue_echo_per_s(int n, int window) {
  Queue req, rep;
  std::thread server([&] {
    for (int i = 0; i < n; ++i) rep.push(req.pop());
  });
  auto t0 = Clock::now();
  int sent = 0;
  for (; sent < std::min(n, window); ++sent) req.push(sent);
  for (int got = 0; got < n; ++got) {
    rep.pop();
    if (sent < n) req.push(sent++);
  }
  const double s = us_since(t0) * 1e-6;
  server.join();
  return n / s;
}

TcpEchoServer::TcpEchoServer() {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) sys_fail("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) sys_fail("bind 127.0.0.1:0");
  if (::listen(fd_, 4) != 0) sys_fail("listen");
  socklen_t len = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
}

void TcpEchoServer::serve_forever() {
  for (;;) {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[16];
    while (read_all(c, buf, sizeof buf)) write_all(c, buf, sizeof buf);
    ::close(c);
  }
}

std::vector<double> tcp_pingpong_us(uint16_t port, int n) {
  int fd = connect_loopback(port);
  std::vector<double> rtt;
  rtt.reserve(size_t(n));
  char msg[16] = {}, back[16];
  for (int i = 0; i < n; ++i) {
    std::memcpy(msg, &i, sizeof i);
    auto t0 = Clock::now();
    write_all(fd, msg, sizeof msg);
    if (!read_all(fd, back, sizeof back)) sys_fail("tcp echo closed");
    rtt.push_back(us_since(t0));
  }
  ::close(fd);
  return rtt;
}

double tcp_pipelined_per_s(uint16_t port, int n, int window) {
  int fd = connect_loopback(port);
  char msg[16] = {}, back[16];
  auto t0 = Clock::now();
  int sent = 0;
  for (; sent < std::min(n, window); ++sent) write_all(fd, msg, sizeof msg);
  for (int got = 0; got < n; ++got) {
    if (!read_all(fd, back, sizeof back)) sys_fail("tcp echo closed");
    if (sent < n) {
      write_all(fd, msg, sizeof msg);
      ++sent;
    }
  }
  const double s = us_since(t0) * 1e-6;
  ::close(fd);
  return n / s;
}

double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

}  // namespace siesta::bench::floors
