// The `siesta worker` processes that `siesta run` starts itself (devices.launch: processes):
// one per rank of its node besides rank 0, with the torchrun variables set (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT). They share the run's stdout and stderr, die with it
// (PR_SET_PDEATHSIG), and sit in their own process group so that a Ctrl-C reaches only the
// coordinator, which then ends the run for everyone after its checkpoint.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace siesta::workflows {

struct WorkerEnv {
  int rank = 1, world_size = 2, local_rank = 1;
  std::string master_addr;
  uint16_t master_port = 0;
};

class WorkerChildren {
 public:
  explicit WorkerChildren(std::string program) : program_(std::move(program)) {}
  ~WorkerChildren();   // kills and reaps the children still running
  WorkerChildren(const WorkerChildren&) = delete;
  WorkerChildren& operator=(const WorkerChildren&) = delete;

  // Starts `program worker` for env.rank; throws WorkflowError when it cannot.
  void spawn(const WorkerEnv& env);
  // A child that has exited (reaped now), described: "worker rank 1 (pid 42) exited with
  // code 1" or "... was killed by signal 9 (Killed)"; nullopt while all run.
  std::optional<std::string> first_exited();
  // What became of `rank`'s child, waiting up to `wait` for it to exit; nullopt if it is
  // still running (or is not a child).
  std::optional<std::string> outcome(int rank, std::chrono::milliseconds wait);
  // Waits up to `wait` for every child to exit, then kills those left; returns (rank, outcome)
  // of those first_exited has not reported.
  std::vector<std::pair<int, std::string>> reap(std::chrono::milliseconds wait);
  pid_t pid_of(int rank) const;
  // Sends `sig` to `rank`'s child if it still runs.
  void signal(int rank, int sig);

 private:
  struct Child {
    int rank = 0;
    pid_t pid = -1;
    std::optional<std::string> exited;   // the outcome once reaped
    bool reported = false;               // returned by first_exited already
  };
  bool poll(Child& c);
  std::string program_;
  std::vector<Child> children_;
};

}  // namespace siesta::workflows
