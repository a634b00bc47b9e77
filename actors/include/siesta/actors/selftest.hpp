// A quick check that the actor runtime works on this machine (used by `siesta doctor`).
#pragma once

#include <string>

namespace siesta::actors {

// "0.17.6"
std::string caf_version();

struct SelftestResult {
  bool ok = false;
  double round_trip_us = 0;  // median of typed request/response round trips
  std::string detail;
};
// Starts an actor system with `threads` scheduler threads, spawns a typed echo actor on a
// detached thread and times request/response round trips from another actor.
SelftestResult actor_selftest(int threads = 2, int round_trips = 1000);

}  // namespace siesta::actors
