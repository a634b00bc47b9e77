// Records every message an actor handles into the trace (when one is open): each handler opens a
// Scope with its arguments and closes it with the reply or the error. Actor names come from a
// registry filled at spawn time, so lines say "coordinator -> engine/0", not actor ids.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <caf/all.hpp>

#include "siesta/actors/trace.hpp"

namespace siesta::actors {

class Tracing {
 public:
  // writer may be null: then nothing is recorded and scopes cost one branch.
  explicit Tracing(std::shared_ptr<TraceWriter> writer) : writer_(std::move(writer)) {}

  // Starts recording into writer (before the first traced message).
  void open(std::shared_ptr<TraceWriter> writer) { writer_ = std::move(writer); }
  void name(const caf::actor_addr& a, std::string name);
  std::string name_of(const caf::strong_actor_ptr& sender) const;
  // The step and phase the coordinator is in; stamped on every line.
  void set_phase(int step, std::string phase);
  // Device memory in use on a worker, for the "mem" field ({"device_used": .., "held": ..}).
  void set_memory_probe(const std::string& rank, std::function<boost::json::object()> probe);
  TraceWriter* writer() const { return writer_.get(); }

  class Scope {
   public:
    Scope(Tracing* t, TraceEvent e, std::string rank);
    Scope(Scope&&) = default;
    ~Scope();
    void ok(boost::json::value reply);
    void fail(const std::string& error);

   private:
    Tracing* t_;
    TraceEvent e_;
    std::string rank_;
    bool done_ = false;
  };
  // `to` is the receiver's registered name ("engine/0"); its rank selects the memory probe.
  Scope begin(caf::local_actor* self, const std::string& to, std::string type,
              boost::json::value args);
  // A line the coordinator writes itself (phase starts).
  void record_phase(int step, const std::string& phase, const std::string& worker,
                    boost::json::value plan);

 private:
  friend class Scope;
  std::shared_ptr<TraceWriter> writer_;
  mutable std::mutex mu_;
  std::map<caf::actor_addr, std::string> names_;
  std::map<std::string, std::function<boost::json::object()>> probes_;
  int step_ = -1;
  std::string phase_;
  boost::json::object memory_of(const std::string& rank);
};

// Runs body inside a handler, recording its reply (as to_json(reply)) or its exception in the
// trace; an exception becomes a caf::error for the requester, so a failed call never kills the
// actor that made it.
template <class T, class Body, class ToJson>
caf::result<T> traced_call(Tracing::Scope scope, Body&& body, ToJson&& to_json) {
  try {
    T out = body();
    scope.ok(to_json(out));
    return out;
  } catch (const std::exception& e) {
    scope.fail(e.what());
    return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
  }
}

}  // namespace siesta::actors
