// `siesta worker`: one rank of a multi-process run. It joins the coordinator (`siesta run`)
// at MASTER_ADDR:MASTER_PORT through CAF's middleman, receives the workflow and the weight
// transport's rendezvous, builds its LocalWorker (cuda:LOCAL_RANK, or the CPU) and hands the
// coordinator its actors, then serves them until the coordinator ends the run.
#pragma once

#include <cstdint>
#include <string>

namespace siesta::workflows {

struct WorkerLaunch {
  int rank = -1;          // RANK: 1..world_size-1 (rank 0 is `siesta run`)
  int world_size = 0;     // WORLD_SIZE
  int local_rank = 0;     // LOCAL_RANK: the GPU on this node
  std::string master_addr = "127.0.0.1";
  uint16_t master_port = 0;
  int connect_timeout_s = 120;   // how long to look for the coordinator
};

// Returns the process exit code: 0 when the coordinator ended the run as completed, 1 when
// the run failed, the coordinator was lost or this rank could not be built (the reason is on
// stderr). Should CAF's shutdown hang once the run has ended (see runner_worker.cpp), it ends
// the process with that code after 5 s.
int run_worker(const WorkerLaunch& launch);

}  // namespace siesta::workflows
