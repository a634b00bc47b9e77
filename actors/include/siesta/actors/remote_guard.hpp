// Local stand-ins for the actors of a worker in another process. CAF 0.17 never answers a
// request whose receiver's process died: measured, the requester waits for its full timeout,
// even for a request sent after the down message arrived. The coordinator's timeouts are long
// (a step can take minutes), so it talks to a guard per remote actor instead: the guard
// forwards every request, monitors the remote actor, and once that is down answers every
// request in flight, and every later one, with an error that names the lost worker.
//
// A guard has the remote actor's interface, so the coordinator cannot tell it from a local
// actor: a run with worker processes drives the same Coordinator code as an in-process one.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <caf/all.hpp>

#include "siesta/actors/protocol.hpp"

namespace siesta::actors {

// Called once, from the guard's thread, with why the remote actor was lost.
using LossCallback = std::function<void(const std::string& reason)>;

namespace detail {

struct GuardState {
  std::string who;                    // "worker rank 1 (pid 123 on host)"
  std::string actor;                  // "engine"
  LossCallback on_loss;
  std::optional<std::string> lost;    // set once the remote actor is down
  uint64_t next_id = 0;
  std::map<uint64_t, std::function<void(const caf::error&)>> pending;   // requests in flight
};

caf::error lost_error(const std::string& reason);
std::string loss_reason(const GuardState& st, const caf::error& down_reason,
                        caf::actor_system& sys);

// One forwarding handler per message signature of the interface.
template <class Sig>
struct Relay;

template <class... In, class Out>
struct Relay<caf::typed_mpi<caf::detail::type_list<In...>, caf::output_tuple<Out>>> {
  template <class Self, class Remote>
  static auto make(Self* self, Remote remote, std::shared_ptr<GuardState> st) {
    return [=](In... xs) -> caf::result<Out> {
      if (st->lost) return lost_error(*st->lost);
      auto rp = self->template make_response_promise<Out>();
      const uint64_t id = st->next_id++;
      st->pending.emplace(id, [rp](const caf::error& e) mutable { rp.deliver(e); });
      // No timeout here: the coordinator's own request carries one.
      self->request(remote, caf::infinite, std::move(xs)...)
          .then(
              [=](Out& r) mutable {
                if (st->pending.erase(id)) rp.deliver(std::move(r));
              },
              [=](caf::error& e) mutable {
                if (st->pending.erase(id)) rp.deliver(std::move(e));
              });
      return rp;
    };
  }
};

template <class... Sigs>
typename caf::typed_actor<Sigs...>::behavior_type guard_behavior(
    typename caf::typed_actor<Sigs...>::pointer self, caf::typed_actor<Sigs...> remote,
    std::shared_ptr<GuardState> st) {
  self->monitor(remote);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (st->lost || dm.source != remote.address()) return;
    st->lost = loss_reason(*st, dm.reason, self->system());
    auto pending = std::move(st->pending);
    st->pending.clear();
    for (auto& [id, fail] : pending) fail(lost_error(*st->lost));
    if (st->on_loss) st->on_loss(*st->lost);
  });
  return {Relay<Sigs>::make(self, remote, st)...};
}

}  // namespace detail

// A local actor with `remote`'s interface that forwards to it (see the file comment). `who`
// names the remote worker in errors, `actor` the remote actor ("engine"). The guard lives until
// it is sent an exit message.
template <class... Sigs>
caf::typed_actor<Sigs...> guard_remote(caf::actor_system& sys, caf::typed_actor<Sigs...> remote,
                                       std::string who, std::string actor, LossCallback on_loss) {
  auto st = std::make_shared<detail::GuardState>();
  st->who = std::move(who);
  st->actor = std::move(actor);
  st->on_loss = std::move(on_loss);
  return sys.spawn(&detail::guard_behavior<Sigs...>, std::move(remote), std::move(st));
}

// Guards every handle of a remote worker; `who` names it ("worker rank 1 (pid 123 on host)").
// The guards are returned as the handles, and as plain actors in `spawned` (to stop them).
WorkerHandles guard_remote_worker(caf::actor_system& sys, const WorkerHandles& remote,
                                  const std::string& who, const LossCallback& on_loss,
                                  std::vector<caf::actor>& spawned);

}  // namespace siesta::actors
