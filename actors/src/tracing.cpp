#include "siesta/actors/tracing.hpp"

namespace siesta::actors {
namespace json = boost::json;

void Tracing::name(const caf::actor_addr& a, std::string n) {
  std::lock_guard<std::mutex> lock(mu_);
  names_[a] = std::move(n);
}

std::string Tracing::name_of(const caf::strong_actor_ptr& sender) const {
  if (!sender) return "external";
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(caf::actor_cast<caf::actor_addr>(sender));
  return it == names_.end() ? "actor#" + std::to_string(sender->id()) : it->second;
}

void Tracing::set_phase(int step, std::string phase) {
  std::lock_guard<std::mutex> lock(mu_);
  step_ = step;
  phase_ = std::move(phase);
}

void Tracing::set_memory_probe(const std::string& rank, std::function<json::object()> probe) {
  std::lock_guard<std::mutex> lock(mu_);
  probes_[rank] = std::move(probe);
}

json::object Tracing::memory_of(const std::string& rank) {
  std::function<json::object()> probe;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = probes_.find(rank);
    if (it != probes_.end()) probe = it->second;
  }
  return probe ? probe() : json::object{};
}

Tracing::Scope Tracing::begin(caf::local_actor* self, const std::string& to, std::string type,
                              json::value args) {
  TraceEvent e;
  if (writer_) {
    e.t_ns = writer_->now_ns();
    e.from = name_of(self->current_sender());
    e.to = to;
    e.type = std::move(type);
    e.args = std::move(args);
    std::lock_guard<std::mutex> lock(mu_);
    e.step = step_;
    e.phase = phase_;
  }
  auto slash = to.find('/');
  return Scope(this, std::move(e), slash == std::string::npos ? "0" : to.substr(slash + 1));
}

void Tracing::record_phase(int step, const std::string& phase, const std::string& worker,
                           json::value plan) {
  set_phase(step, phase);
  if (!writer_) return;
  TraceEvent e;
  e.t_ns = writer_->now_ns();
  e.step = step;
  e.phase = phase;
  e.from = "coordinator";
  e.to = worker;
  e.type = "phase";
  e.args = json::object{{"phase", phase}, {"plan", std::move(plan)}};
  writer_->record(std::move(e));
}

Tracing::Scope::Scope(Tracing* t, TraceEvent e, std::string rank)
    : t_(t), e_(std::move(e)), rank_(std::move(rank)) {}

Tracing::Scope::~Scope() {
  if (!done_) fail("handler ended without a reply");
}

void Tracing::Scope::ok(json::value reply) {
  done_ = true;
  if (!t_->writer_) return;
  e_.dur_ns = t_->writer_->now_ns() - e_.t_ns;
  e_.reply = std::move(reply);
  e_.mem = t_->memory_of(rank_);
  t_->writer_->record(std::move(e_));
}

void Tracing::Scope::fail(const std::string& error) {
  done_ = true;
  if (!t_->writer_) return;
  e_.dur_ns = t_->writer_->now_ns() - e_.t_ns;
  e_.error = error.empty() ? "unknown error" : error;
  e_.mem = t_->memory_of(rank_);
  t_->writer_->record(std::move(e_));
}

}  // namespace siesta::actors
