#include "siesta/actors/worker_join.hpp"

#include <stdexcept>
#include <thread>

#include <caf/io/all.hpp>

namespace siesta::actors {

namespace {

join_actor::behavior_type join_behavior(join_actor::pointer, JoinInfo info,
                                        std::shared_ptr<JoinBoard> board) {
  const int world = info.world_size;
  auto refuse = [board](std::string why) {
    board->refused.push_back(why);
    return caf::make_error(caf::sec::runtime_error, std::move(why));
  };
  return {
      [=](join_atom, int32_t rank, int32_t world_size) -> caf::result<JoinInfo> {
        std::lock_guard<std::mutex> lock(board->mu);
        const std::string r = std::to_string(rank);
        if (world_size != world)
          return refuse("rank " + r + " was started with WORLD_SIZE " + std::to_string(world_size) +
                        ", but this run has " + std::to_string(world) +
                        " ranks (devices.workers_per_node x devices.nodes)");
        if (rank < 1 || rank >= world)
          return refuse("RANK " + r + " is outside 1.." + std::to_string(world - 1) +
                        " (rank 0 is the coordinator, `siesta run`)");
        if (board->asked.count(rank))
          return refuse("rank " + r + " asked to join twice (two workers started with RANK " +
                        r + "?)");
        board->asked.insert(rank);
        return info;
      },
      [=](ready_atom, const JoinedWorker& w) -> caf::result<int32_t> {
        std::lock_guard<std::mutex> lock(board->mu);
        const int rank = w.handles.rank;
        if (!board->asked.count(rank) || board->ready.count(rank))
          return refuse("rank " + std::to_string(rank) +
                        " reported ready without joining first, or twice");
        board->ready.emplace(rank, w);
        return rank;
      },
  };
}

}  // namespace

WorkerJoin::WorkerJoin(caf::actor_system& sys, JoinInfo info)
    : sys_(sys), board_(std::make_shared<JoinBoard>()) {
  actor_ = sys.spawn(join_behavior, std::move(info), board_);
}

WorkerJoin::~WorkerJoin() {
  if (port_) sys_.middleman().unpublish(actor_, port_);
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

uint16_t WorkerJoin::publish(uint16_t port, const std::string& bind) {
  // SO_REUSEADDR: a run restarted right after the last one finds the port in TIME_WAIT.
  auto p = sys_.middleman().publish(actor_, port, bind.empty() ? nullptr : bind.c_str(), true);
  if (!p)
    throw std::runtime_error("cannot listen for workers on " + (bind.empty() ? "*" : bind) + ":" +
                             std::to_string(port) + " (" + sys_.render(p.error()) +
                             "); pick another devices.master_port (MASTER_PORT), or 0 for a "
                             "free one when every worker is started by `siesta run`");
  port_ = *p;
  return port_;
}

join_actor connect_to_coordinator(caf::actor_system& sys, const std::string& host, uint16_t port,
                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    auto a = sys.middleman().remote_actor<join_actor>(host, port);
    if (a) return *a;
    last = sys.render(a.error());
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw std::runtime_error("no coordinator at " + host + ":" + std::to_string(port) + " within " +
                           std::to_string(timeout.count() / 1000) + " s (last attempt: " + last +
                           "); is `siesta run` running there, with this MASTER_ADDR/MASTER_PORT?");
}

}  // namespace siesta::actors
