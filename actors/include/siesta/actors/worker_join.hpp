// How worker processes join a run through CAF's middleman (TCP).
//
// Coordinator side: a join actor, published on MASTER_PORT, hands each worker process the run
// (JoinInfo: the workflow and where the weight transport meets) and collects the handles of
// its actors once they run (JoinedWorker). It fills a JoinBoard that the runner polls while it
// starts the processes, so the runner can also watch its child processes and a deadline.
//
// Worker side: connect_to_coordinator finds the join actor, retrying while the coordinator is
// not up yet (torchrun and Slurm start every rank at once).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "siesta/actors/protocol.hpp"

namespace siesta::actors {

struct JoinBoard {
  mutable std::mutex mu;
  std::set<int> asked;                     // ranks that were handed the JoinInfo
  std::map<int, JoinedWorker> ready;       // their actors, as the workers sent them
  std::vector<std::string> refused;        // join attempts turned away, and why
};

class WorkerJoin {
 public:
  // Ranks 1..info.world_size-1 may join; rank 0 is the coordinator's own process.
  WorkerJoin(caf::actor_system& sys, JoinInfo info);
  ~WorkerJoin();   // unpublishes and stops the join actor
  WorkerJoin(const WorkerJoin&) = delete;
  WorkerJoin& operator=(const WorkerJoin&) = delete;

  // Listens on `port` (0 = a free one) at `bind` (empty = every interface); returns the port.
  // Throws std::runtime_error naming the port when it cannot.
  uint16_t publish(uint16_t port, const std::string& bind);
  const JoinBoard& board() const { return *board_; }

 private:
  caf::actor_system& sys_;
  std::shared_ptr<JoinBoard> board_;
  join_actor actor_;
  uint16_t port_ = 0;
};

// The join actor at host:port; retries until `timeout`, then throws std::runtime_error saying
// what the last attempt found.
join_actor connect_to_coordinator(caf::actor_system& sys, const std::string& host, uint16_t port,
                                  std::chrono::milliseconds timeout);

}  // namespace siesta::actors
