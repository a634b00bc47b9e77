// `siesta worker`: one rank of a multi-process run (see siesta/workflows/worker.hpp). Where it
// joins comes from the torchrun variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
// MASTER_PORT, so torchrun, Slurm or mpirun can start it; a flag overrides its variable.
// `siesta run` with devices.launch: processes starts these itself.
#include <cstdlib>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "siesta/workflows/worker.hpp"

namespace siesta::cli {

namespace {

struct WorkerArgs {
  std::optional<int> rank, world_size, local_rank, master_port;
  std::optional<std::string> master_addr;
  int connect_timeout_s = 120;
};

// The flag, else the variable; nullopt when neither is given. Throws naming a bad variable.
std::optional<long> int_from(const std::optional<int>& flag, const char* var, long lo, long hi) {
  if (flag) return *flag;
  const char* v = std::getenv(var);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end || x < lo || x > hi)
    throw std::invalid_argument(std::string(var) + "='" + v + "' is not an integer in " +
                                std::to_string(lo) + ".." + std::to_string(hi));
  return x;
}

}  // namespace

Runner add_worker(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "worker", "Serve one rank of a multi-process run: join the coordinator (`siesta run` with "
                "devices.launch processes or external) at MASTER_ADDR:MASTER_PORT");
  auto a = std::make_shared<WorkerArgs>();
  sub->add_option("--rank", a->rank, "This worker's rank, 1..WORLD_SIZE-1 (default: $RANK)");
  sub->add_option("--world-size", a->world_size, "Ranks in the run (default: $WORLD_SIZE)");
  sub->add_option("--local-rank", a->local_rank,
                  "Rank on this node: the GPU it uses (default: $LOCAL_RANK, else 0)");
  sub->add_option("--master-addr", a->master_addr,
                  "The coordinator's host (default: $MASTER_ADDR, else 127.0.0.1)");
  sub->add_option("--master-port", a->master_port,
                  "The coordinator's port (default: $MASTER_PORT)");
  sub->add_option("--connect-timeout", a->connect_timeout_s,
                  "Seconds to keep looking for the coordinator (default 120)")
      ->check(CLI::Range(1, 86400));
  return [a] {
    workflows::WorkerLaunch l;
    try {
      auto rank = int_from(a->rank, "RANK", 0, 1 << 20);
      auto world = int_from(a->world_size, "WORLD_SIZE", 1, 1 << 20);
      auto port = int_from(a->master_port, "MASTER_PORT", 1, 65535);
      auto local = int_from(a->local_rank, "LOCAL_RANK", 0, 1 << 20);
      if (!rank || !world || !port)
        return usage_error(std::string("siesta worker needs ") + (!rank ? "RANK (--rank)" :
                           !world ? "WORLD_SIZE (--world-size)" : "MASTER_PORT (--master-port)") +
                           "; it joins a run that `siesta run` coordinates (devices.launch "
                           "processes or external)");
      if (*rank == 0)
        return usage_error("RANK 0 is the coordinator: run `siesta run` there; workers are "
                           "ranks 1..WORLD_SIZE-1");
      if (*rank >= *world)
        return usage_error("RANK " + std::to_string(*rank) + " is outside 1.." +
                           std::to_string(*world - 1) + " (WORLD_SIZE " + std::to_string(*world) + ")");
      l.rank = int(*rank);
      l.world_size = int(*world);
      l.master_port = uint16_t(*port);
      l.local_rank = local ? int(*local) : 0;
    } catch (const std::invalid_argument& e) {
      return usage_error(e.what());
    }
    if (a->master_addr) {
      l.master_addr = *a->master_addr;
    } else if (const char* v = std::getenv("MASTER_ADDR"); v && *v) {
      l.master_addr = v;
    }
    l.connect_timeout_s = a->connect_timeout_s;
    return workflows::run_worker(l);
  };
}

}  // namespace siesta::cli
