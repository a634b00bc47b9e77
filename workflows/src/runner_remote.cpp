#include "runner_remote.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <thread>

#include "siesta/actors/remote_guard.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

namespace {

// Workers join within this (model loading included). Local workers that exit early end the
// wait at once; so does nothing for external ones, which may be queued by a scheduler.
constexpr auto kJoinTimeout = std::chrono::seconds(300);
// Once every worker has asked to join, they connect to rank 0's host transport right away.
constexpr int kTransportConnectMs = 60000;

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.starts_with("127.") || addr == "::1";
}

uint16_t port_from_env(uint16_t fallback) {
  const char* v = std::getenv("MASTER_PORT");
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long p = std::strtol(v, &end, 10);
  if (*end || p < 0 || p > 65535)
    throw WorkflowError(std::string("MASTER_PORT '") + v + "' is not a port number (0..65535)");
  return uint16_t(p);
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

}  // namespace

RemoteRanks::RemoteRanks(caf::actor_system& sys, const WorkflowSpec& spec, siesta::Device device,
                         std::string worker_program, std::string trace_stem)
    : sys_(sys) {
  local_ranks_ = spec.devices.workers_per_node;
  world_ = local_ranks_ * spec.devices.nodes;
  spawn_local_ = spec.devices.launch == Launch::Processes;
  cuda_ = device.is_cuda();
  const char* env_addr = std::getenv("MASTER_ADDR");
  master_addr_ = env_addr && *env_addr ? env_addr : spec.devices.master_addr;
  master_port_ = port_from_env(uint16_t(spec.devices.master_port));
  // A loopback address keeps the run private to this machine; any other one listens on every
  // interface, so that workers on other nodes reach it.
  bind_ = is_loopback(master_addr_) ? "127.0.0.1" : "";

  actors::JoinInfo info;
  info.workflow_yaml = to_yaml(spec, false);
  info.world_size = world_;
  info.trace_stem = std::move(trace_stem);
  if (cuda_) {
    info.transport = "nccl";
    if (world_ > 1) {
      nccl_id_ = comm::make_unique_id();
      std::memcpy(info.nccl_id.bytes.data(), nccl_id_.data(), nccl_id_.size());
    }
  } else {
    info.transport = "host";
    listener_.emplace(bind_.empty() ? "0.0.0.0" : bind_, 0);
    info.host_addr = bind_.empty() ? master_addr_ : bind_;
    info.host_port = listener_->port();
    session_id_ = (uint64_t(std::random_device{}()) << 32) ^ uint64_t(::getpid());
    info.session_id = session_id_;
  }
  join_ = std::make_unique<actors::WorkerJoin>(sys, std::move(info));
  if (spawn_local_) {
    if (worker_program.empty()) worker_program = "/proc/self/exe";
    children_ = std::make_unique<WorkerChildren>(std::move(worker_program));
  }
}

RemoteRanks::~RemoteRanks() {
  if (!finished_) finish(1, "the coordinator stopped");
  for (auto& g : guards_) caf::anon_send_exit(g, caf::exit_reason::user_shutdown);
}

void RemoteRanks::wait_for(size_t count, const char* what, const std::function<size_t()>& have) {
  const auto deadline = std::chrono::steady_clock::now() + kJoinTimeout;
  for (;;) {
    {
      const auto& b = join_->board();
      std::lock_guard<std::mutex> lock(b.mu);
      for (; refusals_shown_ < b.refused.size(); ++refusals_shown_)
        std::cerr << "siesta run: refused a worker: " << b.refused[refusals_shown_] << "\n";
    }
    if (have() >= count) return;
    if (children_)
      if (auto gone = children_->first_exited())
        throw WorkflowError(*gone + " before it " + what + " (its output, if any, is above)");
    if (std::chrono::steady_clock::now() >= deadline) {
      std::vector<int> missing;
      const auto& b = join_->board();
      std::lock_guard<std::mutex> lock(b.mu);
      for (int r = 1; r < world_; ++r)
        if (!(std::string(what) == "joined" ? b.asked.count(r) : b.ready.count(r)))
          missing.push_back(r);
      throw WorkflowError("worker rank(s) " + ranks_text(missing) + " had not " + what + " after " +
                          std::to_string(kJoinTimeout.count()) + " s; start them with `siesta "
                          "worker` and RANK, WORLD_SIZE=" + std::to_string(world_) +
                          ", LOCAL_RANK, MASTER_ADDR=" + master_addr_ + ", MASTER_PORT=" +
                          std::to_string(master_port_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::shared_ptr<comm::Transport> RemoteRanks::start() {
  try {
    master_port_ = join_->publish(master_port_, bind_);
  } catch (const std::exception& e) {
    throw WorkflowError(e.what());
  }
  const size_t remote = size_t(world_ - 1);
  if (spawn_local_)
    for (int r = 1; r < local_ranks_; ++r)
      children_->spawn(WorkerEnv{r, world_, r, bind_.empty() ? master_addr_ : bind_, master_port_});
  if (world_ > local_ranks_ || !spawn_local_)
    std::cerr << "siesta run: waiting for " << (spawn_local_ ? world_ - local_ranks_ : world_ - 1)
              << " worker(s) at " << master_addr_ << ":" << master_port_ << " (`siesta worker` "
              << "with RANK, WORLD_SIZE=" << world_ << ", LOCAL_RANK, MASTER_ADDR, MASTER_PORT)\n";
  auto asked = [this] {
    const auto& b = join_->board();
    std::lock_guard<std::mutex> lock(b.mu);
    return b.asked.size();
  };
  wait_for(remote, "joined", asked);
  if (world_ == 1) return nullptr;
  if (cuda_) return std::make_shared<comm::NcclTransport>(nccl_id_, 0, world_, 0);
  comm::HostTransportOptions o;
  o.port = listener_->port();
  o.session_id = session_id_;
  o.connect_timeout_ms = kTransportConnectMs;
  return comm::HostTransport::serve(std::move(*listener_), world_, o);
}

std::vector<actors::JoinedWorker> RemoteRanks::wait_ready() {
  auto ready = [this] {
    const auto& b = join_->board();
    std::lock_guard<std::mutex> lock(b.mu);
    return b.ready.size();
  };
  wait_for(size_t(world_ - 1), "reported ready", ready);
  std::map<int, actors::JoinedWorker> joined;
  {
    const auto& b = join_->board();
    std::lock_guard<std::mutex> lock(b.mu);
    joined = b.ready;
  }
  for (auto& [rank, w] : joined) {
    const std::string who = "worker rank " + std::to_string(rank) + " (pid " +
                            std::to_string(w.pid) + " on " + w.host + ")";
    auto on_loss = [this, rank = rank](const std::string& why) {
      std::lock_guard<std::mutex> lock(mu_);
      lost_.emplace(rank, why);
      if (!first_lost_) first_lost_ = why;
    };
    w.handles = actors::guard_remote_worker(sys_, w.handles, who, on_loss, guards_);
    ready_.push_back(w);
  }
  return ready_;
}

std::optional<std::string> RemoteRanks::lost() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_lost_;
}

std::optional<std::string> RemoteRanks::explain_loss() {
  // A run that failed because a worker died may hear of it first from another rank (rank 0's
  // broadcast breaks off at once); the guards' down messages follow within moments.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!lost() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int rank = -1;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lost_.empty()) return std::nullopt;
    // The first loss reported; its rank is the one whose reason was recorded first.
    for (auto& [r, w] : lost_)
      if (w == *first_lost_) rank = r, why = w;
  }
  if (children_)
    if (auto what = children_->outcome(rank, std::chrono::seconds(2))) why += "; " + *what;
  return why;
}

void RemoteRanks::finish(int code, const std::string& reason) {
  if (finished_) return;
  finished_ = true;
  {
    caf::scoped_actor self{sys_};
    std::map<int, std::string> lost;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lost = lost_;
    }
    // Requests to a lost worker would only wait for their timeout.
    for (const auto& w : ready_) {
      if (lost.count(w.handles.rank) || !w.control) continue;
      self->request(w.control, std::chrono::seconds(5), actors::done_atom_v, int32_t(code), reason)
          .receive([](int32_t) {}, [](caf::error&) {});
    }
  }
  // A child that never reported ready (the run failed while starting) is not listening for
  // the end of the run; it is stopped instead.
  if (children_)
    for (int r = 1; r < local_ranks_; ++r)
      if (std::none_of(ready_.begin(), ready_.end(),
                       [r](const actors::JoinedWorker& w) { return w.handles.rank == r; }))
        children_->signal(r, SIGTERM);
  // Told the run ended, a worker exits with 0 (completed) or 1; anything else is news. A lost
  // worker's outcome is in the run's error already.
  const std::string expected = code == 0 ? "exited with code 0" : "exited with code 1";
  std::vector<int> lost_ranks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [r, why] : lost_) lost_ranks.push_back(r);
  }
  if (children_)
    for (const auto& [rank, outcome] : children_->reap(std::chrono::seconds(10)))
      if (outcome.find(expected) == std::string::npos &&
          std::find(lost_ranks.begin(), lost_ranks.end(), rank) == lost_ranks.end())
        std::cerr << "siesta run: " << outcome << "\n";
}

}  // namespace siesta::workflows
