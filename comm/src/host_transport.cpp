// Host transport: star topology around rank 0 over TCP loopback, length-prefixed frames with
// sequence numbers, poll()-bounded I/O (host_socket.cpp), abort frames that carry the reason.
#include "siesta/comm/host_transport.hpp"

#include <chrono>
#include <cstring>
#include <vector>

#include "host_socket.hpp"
#include "siesta/comm/error.hpp"
#include "staging_copy.hpp"

namespace siesta::comm {

namespace {
constexpr uint32_t kHelloMagic = 0x53574831;  // "SWH1"
constexpr uint32_t kFrameMagic = 0x53574631;  // "SWF1"
enum FrameKind : uint32_t { kData = 1, kAbort = 2, kBarrier = 3 };

struct Hello {
  uint32_t magic = kHelloMagic;
  int32_t rank = 0, world = 0;
  uint32_t pad = 0;
  uint64_t session = 0;
};
struct HelloReply {
  uint32_t magic = kHelloMagic;
  uint32_t accepted = 0;
  char reason[120] = {};
};
struct Frame {
  uint32_t magic = kFrameMagic;
  uint32_t kind = kData;
  uint64_t seq = 0;
  uint64_t bytes = 0;
  int32_t root = 0;
  uint32_t pad = 0;
};

std::string rank_name(int r) { return "rank " + std::to_string(r); }

// Reads the frame a peer sent while we were writing to it: an abort (with its reason) or EOF.
[[noreturn]] void on_peer_readable(int fd, const std::string& peer) {
  Frame f;
  net::recv_all(fd, &f, sizeof f, 1000, peer);
  if (f.magic == kFrameMagic && f.kind == kAbort && f.bytes < 4096) {
    std::string why(f.bytes, '\0');
    net::recv_all(fd, why.data(), why.size(), 1000, peer);
    throw CommError(peer + " aborted the group: " + why);
  }
  throw CommError("host transport: " + peer + " sent an unexpected frame (kind " +
                  std::to_string(f.kind) + ") during a broadcast: the ranks are out of step");
}
}  // namespace

// Frame I/O shared by the collectives.
struct HostWire {
  static void send_frame(HostTransport& t, int to, uint32_t kind, const void* data,
                         uint64_t bytes, int root) {
    Frame f;
    f.kind = kind;
    f.seq = t.seq_;
    f.bytes = bytes;
    f.root = root;
    int fd = t.peer_fd_[t.rank_ == 0 ? to : 0];
    net::send_all(fd, &f, sizeof f, t.opts_.io_timeout_ms, rank_name(to), on_peer_readable);
    if (bytes)
      net::send_all(fd, data, bytes, t.opts_.io_timeout_ms, rank_name(to), on_peer_readable);
  }
  static void recv_frame(HostTransport& t, int from, uint32_t kind, void* data, uint64_t bytes,
                         int root) {
    int fd = t.peer_fd_[t.rank_ == 0 ? from : 0];
    std::string peer = rank_name(from);
    Frame f;
    net::recv_all(fd, &f, sizeof f, t.opts_.io_timeout_ms, peer);
    if (f.magic != kFrameMagic)
      throw CommError("host transport: garbage from " + peer + " (bad frame magic)");
    if (f.kind == kAbort) {
      std::string why(std::min<uint64_t>(f.bytes, 4096), '\0');
      net::recv_all(fd, why.data(), why.size(), t.opts_.io_timeout_ms, peer);
      throw CommError(peer + " aborted the group: " + why);
    }
    if (f.kind != kind || f.seq != t.seq_ || f.bytes != bytes || f.root != root)
      throw CommError("host transport: " + peer + " sent collective #" + std::to_string(f.seq) +
                      " (kind " + std::to_string(f.kind) + ", " + std::to_string(f.bytes) +
                      " bytes, root " + std::to_string(f.root) + ") while this rank expects #" +
                      std::to_string(t.seq_) + " (kind " + std::to_string(kind) + ", " +
                      std::to_string(bytes) + " bytes, root " + std::to_string(root) +
                      "): the ranks are out of step");
    if (bytes) net::recv_all(fd, data, bytes, t.opts_.io_timeout_ms, peer);
  }
};

HostListener::HostListener(const std::string& host, uint16_t port) {
  fd_ = net::listen_on(host, port, &port_);
}
HostListener::~HostListener() { net::close_fd(fd_); }
HostListener::HostListener(HostListener&& o) noexcept : fd_(o.fd_), port_(o.port_) { o.fd_ = -1; }
int HostListener::release_fd() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

HostTransport::HostTransport(int rank, int world, HostTransportOptions opts)
    : rank_(rank), world_(world), opts_(std::move(opts)) {
  if (world < 1 || rank < 0 || rank >= world)
    throw CommError("host transport: rank " + std::to_string(rank) + " of world " +
                    std::to_string(world) + " (allowed: 0 <= rank < world, world >= 1)");
  peer_fd_.assign(rank == 0 ? size_t(world) : 1, -1);
}

HostTransport::~HostTransport() {
  for (int fd : peer_fd_) net::close_fd(fd);
}

std::unique_ptr<HostTransport> HostTransport::serve(HostListener listener, int world,
                                                    const HostTransportOptions& opts) {
  std::unique_ptr<HostTransport> t(new HostTransport(0, world, opts));
  int lfd = listener.release_fd();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.connect_timeout_ms);
  int joined = 1;
  std::string refusals;
  while (joined < world) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()).count();
    int fd = left > 0 ? net::accept_within(lfd, int(left)) : -1;
    if (fd < 0) {
      net::close_fd(lfd);
      std::string missing;
      for (int r = 1; r < world; ++r)
        if (t->peer_fd_[r] < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      throw CommError("host transport: rank 0 waited " + std::to_string(opts.connect_timeout_ms) +
                      " ms for " + std::to_string(world - 1) + " peers on port " +
                      std::to_string(listener.port()) + "; ranks " + missing +
                      " never joined" + (refusals.empty() ? "" : " (refused: " + refusals + ")"));
    }
    Hello h;
    HelloReply rep;
    std::string why;
    try {
      net::recv_all(fd, &h, sizeof h, opts.io_timeout_ms, "a joining peer");
    } catch (const CommError&) {
      net::close_fd(fd);
      continue;
    }
    if (h.magic != kHelloMagic) why = "not a siesta host transport peer";
    else if (h.session != opts.session_id)
      why = "session " + std::to_string(h.session) + ", this group is session " +
            std::to_string(opts.session_id);
    else if (h.world != world)
      why = "world " + std::to_string(h.world) + ", this group has world " + std::to_string(world);
    else if (h.rank < 1 || h.rank >= world)
      why = "rank " + std::to_string(h.rank) + " (allowed 1.." + std::to_string(world - 1) + ")";
    else if (t->peer_fd_[h.rank] >= 0)
      why = "rank " + std::to_string(h.rank) + " joined twice";
    rep.accepted = why.empty();
    std::strncpy(rep.reason, why.c_str(), sizeof rep.reason - 1);
    try {
      net::send_all(fd, &rep, sizeof rep, opts.io_timeout_ms, rank_name(h.rank));
    } catch (const CommError&) {
      why = "handshake reply failed";
    }
    if (!why.empty()) {
      refusals += (refusals.empty() ? "" : "; ") + why;
      net::close_fd(fd);
      continue;
    }
    t->peer_fd_[h.rank] = fd;
    ++joined;
  }
  net::close_fd(lfd);
  return t;
}

std::unique_ptr<HostTransport> HostTransport::join(int rank, int world,
                                                   const HostTransportOptions& opts) {
  if (rank == 0) throw CommError("host transport: rank 0 serves (HostTransport::serve), it does not join");
  std::unique_ptr<HostTransport> t(new HostTransport(rank, world, opts));
  int fd = net::connect_to(opts.host, opts.port, opts.connect_timeout_ms);
  t->peer_fd_[0] = fd;
  Hello h;
  h.rank = rank;
  h.world = world;
  h.session = opts.session_id;
  HelloReply rep;
  net::send_all(fd, &h, sizeof h, opts.io_timeout_ms, "rank 0");
  net::recv_all(fd, &rep, sizeof rep, opts.connect_timeout_ms, "rank 0");
  if (rep.magic != kHelloMagic || !rep.accepted)
    throw CommError("host transport: rank 0 at " + opts.host + ":" + std::to_string(opts.port) +
                    " refused rank " + std::to_string(rank) + ": " +
                    std::string(rep.reason, strnlen(rep.reason, sizeof rep.reason)));
  return t;
}

void HostTransport::check_usable() const {
  if (aborted()) throw CommError("host transport: used after abort (" + abort_reason_ + ")");
}

void HostTransport::fail(const std::string& what) {
  abort(what);
  throw CommError(what);
}

void HostTransport::broadcast(void* data, size_t bytes, int root, Device where) {
  check_usable();
  if (root < 0 || root >= world_)
    throw CommError("host transport: broadcast root " + std::to_string(root) + " (allowed 0.." +
                    std::to_string(world_ - 1) + ")");
  if (!where.is_cuda()) return broadcast_host(data, bytes, root);
  // Device memory: bounce through host memory (CUDA builds only).
  std::vector<std::byte> host(bytes);
  if (rank_ == root) copy_bytes(host.data(), Device::cpu(), data, where, bytes);
  broadcast_host(host.data(), bytes, root);
  if (rank_ != root) copy_bytes(data, where, host.data(), Device::cpu(), bytes);
}

void HostTransport::broadcast_host(void* data, size_t bytes, int root) {
  try {
    if (world_ > 1) {
      if (rank_ == 0) {
        if (root != 0) HostWire::recv_frame(*this, root, kData, data, bytes, root);
        for (int r = 1; r < world_; ++r)
          if (r != root) HostWire::send_frame(*this, r, kData, data, bytes, root);
      } else if (rank_ == root) {
        HostWire::send_frame(*this, 0, kData, data, bytes, root);
      } else {
        HostWire::recv_frame(*this, 0, kData, data, bytes, root);
      }
    }
    ++seq_;
  } catch (const CommError& e) {
    fail(std::string("rank ") + std::to_string(rank_) + ": broadcast of " +
         std::to_string(bytes) + " bytes from root " + std::to_string(root) + " failed: " +
         e.what());
  }
}

void HostTransport::barrier() {
  check_usable();
  try {
    if (world_ > 1) {
      if (rank_ == 0) {
        for (int r = 1; r < world_; ++r) HostWire::recv_frame(*this, r, kBarrier, nullptr, 0, r);
        for (int r = 1; r < world_; ++r) HostWire::send_frame(*this, r, kBarrier, nullptr, 0, 0);
      } else {
        HostWire::send_frame(*this, 0, kBarrier, nullptr, 0, rank_);
        HostWire::recv_frame(*this, 0, kBarrier, nullptr, 0, 0);
      }
    }
    ++seq_;
  } catch (const CommError& e) {
    fail(std::string("rank ") + std::to_string(rank_) + ": barrier failed: " + e.what());
  }
}

void HostTransport::abort(const std::string& reason) noexcept {
  if (aborted()) return;
  try {
    abort_reason_ = reason.empty() ? "aborted" : reason;
    std::string why = abort_reason_.substr(0, 4000);
    Frame f;
    f.kind = kAbort;
    f.seq = seq_;
    f.bytes = why.size();
    f.root = rank_;
    for (int& fd : peer_fd_) {
      if (fd < 0) continue;
      // Whole abort frames only: header and reason in one send, so a peer never reads half.
      std::string msg(reinterpret_cast<const char*>(&f), sizeof f);
      msg += why;
      try {  // bounded: a peer that does not drain its socket gets EOF instead of the reason
        net::send_all(fd, msg.data(), msg.size(), 500, "a peer");
      } catch (const CommError&) {
      }
      // Half-close only: a full close with unread input would reset the connection and could
      // drop the abort frame before the peer reads it. The destructor closes.
      net::shutdown_write(fd);
    }
  } catch (...) {
  }
}

}  // namespace siesta::comm
