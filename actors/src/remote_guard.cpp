#include "siesta/actors/remote_guard.hpp"

namespace siesta::actors {

namespace detail {

caf::error lost_error(const std::string& reason) {
  return caf::make_error(caf::sec::runtime_error, reason);
}

std::string loss_reason(const GuardState& st, const caf::error& down_reason,
                        caf::actor_system& sys) {
  // The middleman kills every proxy of a peer whose connection closed with this reason: the
  // process died (killed, crashed) or the network between the two dropped.
  if (down_reason == caf::exit_reason::remote_link_unreachable)
    return st.who + " was lost: the connection to its process closed (the process died or "
                    "the network dropped)";
  return st.who + " failed: its " + st.actor + " stopped (" + sys.render(down_reason) + ")";
}

}  // namespace detail

WorkerHandles guard_remote_worker(caf::actor_system& sys, const WorkerHandles& remote,
                                  const std::string& who, const LossCallback& on_loss,
                                  std::vector<caf::actor>& spawned) {
  WorkerHandles g;
  g.rank = remote.rank;
  auto keep = [&](auto handle) {
    spawned.push_back(caf::actor_cast<caf::actor>(handle));
    return handle;
  };
  g.engine = keep(guard_remote(sys, remote.engine, who, "engine", on_loss));
  g.memory = keep(guard_remote(sys, remote.memory, who, "memory manager", on_loss));
  g.syncer = keep(guard_remote(sys, remote.syncer, who, "weight syncer", on_loss));
  if (remote.trainer) g.trainer = keep(guard_remote(sys, remote.trainer, who, "trainer", on_loss));
  return g;
}

}  // namespace siesta::actors
