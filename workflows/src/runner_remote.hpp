// Ranks 1..world-1 of a run whose workers are processes (devices.launch: processes or
// external). The coordinator process keeps rank 0; the other ranks are `siesta worker`
// processes that join through CAF's middleman at MASTER_ADDR:MASTER_PORT:
//
//   1. the join actor is published; `siesta run` starts its node's workers (launch: processes),
//      the others are started elsewhere with the torchrun variables (launch: external);
//   2. each worker asks for the run (workflow YAML, weight-transport rendezvous: the host
//      transport's port and session, or the NCCL unique id); once all have asked, rank 0's
//      end of the transport is made;
//   3. each worker builds its LocalWorker and reports its actors' handles; the coordinator
//      drives them through guards (actors/remote_guard.hpp), so a lost worker fails the
//      request in flight at once with its rank named, instead of hanging until the timeout;
//   4. at the end every live worker is told the run is over, and the children are reaped.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "runner_children.hpp"
#include "siesta/actors/worker_join.hpp"
#include "siesta/comm/host_transport.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/comm/transport.hpp"
#include "siesta/workflows/spec.hpp"

namespace siesta::workflows {

class RemoteRanks {
 public:
  // worker_program: the siesta executable to start workers with (launch: processes).
  // trace_stem: the workers' traces go to "<trace_stem>.rank-N.jsonl" (empty: no trace).
  RemoteRanks(caf::actor_system& sys, const WorkflowSpec& spec, siesta::Device device,
              std::string worker_program, std::string trace_stem);
  ~RemoteRanks();
  RemoteRanks(const RemoteRanks&) = delete;
  RemoteRanks& operator=(const RemoteRanks&) = delete;

  int world_size() const { return world_; }
  // Steps 1 and 2; returns rank 0's weight transport (null in a world of one). Throws
  // WorkflowError naming the ranks that did not join and why (a child's exit, the deadline).
  std::shared_ptr<comm::Transport> start();
  // Step 3: every remote rank's JoinedWorker, in rank order, its handles replaced by guards.
  std::vector<actors::JoinedWorker> wait_ready();
  // The first worker lost after it joined ("worker rank 1 (pid 42 on host) was lost: ...").
  std::optional<std::string> lost() const;
  // The lost worker and what became of its process (when it is a child), for the run's error.
  std::optional<std::string> explain_loss();
  // Step 4. code 0 = the run completed; the workers exit with 0 then, else with 1.
  void finish(int code, const std::string& reason);

 private:
  void wait_for(size_t count, const char* what, const std::function<size_t()>& have);

  caf::actor_system& sys_;
  int world_ = 1, local_ranks_ = 1;
  bool spawn_local_ = false, cuda_ = false;
  std::string master_addr_;
  uint16_t master_port_ = 0;
  std::string bind_;                       // "" = every interface
  std::optional<comm::HostListener> listener_;   // host transport: rank 0's end
  uint64_t session_id_ = 0;
  comm::NcclUniqueId nccl_id_{};                 // nccl: handed to every worker
  std::unique_ptr<actors::WorkerJoin> join_;
  std::unique_ptr<WorkerChildren> children_;
  std::vector<actors::JoinedWorker> ready_;  // guarded handles
  std::vector<caf::actor> guards_;
  mutable std::mutex mu_;
  std::map<int, std::string> lost_;        // rank -> why, filled from the guards' threads
  std::optional<std::string> first_lost_;
  size_t refusals_shown_ = 0;
  bool finished_ = false;
};

}  // namespace siesta::workflows
