#include "siesta/actors/replay.hpp"

#include <iostream>
#include <map>
#include <memory>

#include <boost/json.hpp>

#include "siesta/actors/engine_lifecycle.hpp"
#include "siesta/actors/memory_budget.hpp"
#include "siesta/actors/step_protocol.hpp"
#include "siesta/actors/trace.hpp"

namespace siesta::actors {
namespace json = boost::json;

namespace {

json::value lifecycle_json(const LifecycleState& s) {
  return json::object{{"is_sleeping", s.is_sleeping()},
                      {"weights_awake", s.weights_awake},
                      {"kv_awake", s.kv_awake},
                      {"weights_valid", s.weights_valid},
                      {"sleep_level", s.sleep_level}};
}

std::string rank_of(const std::string& actor) {
  auto p = actor.find('/');
  return p == std::string::npos ? "0" : actor.substr(p + 1);
}

std::string kind_of(const std::string& actor) { return actor.substr(0, actor.find('/')); }

StepPlan plan_from(const json::value& v) {
  StepPlan p;
  if (!v.is_object()) return p;
  const auto& o = v.as_object();
  if (auto* x = o.if_contains("sleep_level"); x && x->is_number()) p.sleep_level = x->to_number<int>();
  if (auto* x = o.if_contains("wake_order"); x && x->is_string())
    p.wake_order = x->as_string() == "all" ? WakeOrder::All : WakeOrder::WeightsFirst;
  if (auto* x = o.if_contains("offload_trainer"); x && x->is_bool()) p.offload_trainer = x->as_bool();
  if (auto* x = o.if_contains("rollout"); x && x->is_bool()) p.rollout = x->as_bool();
  return p;
}

struct Machines {
  std::map<std::string, EngineLifecycle> engines;
  std::map<std::string, std::unique_ptr<MemoryBudget>> budgets;
  std::map<std::string, std::unique_ptr<StepProtocol>> protocols;
  json::object header;
  int steps = 0;

  MemoryBudget& budget(const std::string& rank) {
    auto& b = budgets[rank];
    if (!b) {
      uint64_t cap = 0;
      if (auto* d = header.if_contains("devices"); d && d->is_array())
        for (auto& dev : d->as_array())
          if (dev.is_object() && dev.as_object().contains("rank") &&
              std::to_string(dev.as_object().at("rank").to_number<int>()) == rank)
            cap = dev.as_object().at("budget_bytes").to_number<uint64_t>();
      b = std::make_unique<MemoryBudget>(cap);
    }
    return *b;
  }

  // Returns the replayed outcome as (reply, error); std::nullopt when this message carries
  // nothing the state machines can re-derive.
  std::optional<std::pair<json::value, std::string>> apply(const TraceEvent& e) {
    std::string kind = kind_of(e.to), rank = rank_of(e.to);
    try {
      if (e.type == "phase" && e.args.is_object()) {
        const auto& a = e.args.as_object();
        StepPlan plan = plan_from(a.contains("plan") ? a.at("plan") : json::value());
        auto& proto = protocols[rank];  // one step protocol per worker
        // A new stage (SFT -> GRPO, say) brings a new plan; it starts at a step boundary.
        if (!proto || proto->plan().phases() != plan.phases()) proto = std::make_unique<StepProtocol>(plan);
        int before = proto->completed_steps();
        proto->advance(std::string(a.at("phase").as_string()));
        if (proto->completed_steps() > before && rank == "0") ++steps;
        return std::nullopt;
      }
      if (kind == "engine") {
        auto& lc = engines[rank];
        if (e.type == "sleep") {
          lc.sleep(e.args.as_object().at("level").to_number<int>());
        } else if (e.type == "wake") {
          std::vector<std::string> tags;
          if (auto* t = e.args.as_object().if_contains("tags"); t && t->is_array())
            for (auto& x : t->as_array()) tags.emplace_back(x.as_string());
          lc.wake(tags);
        } else if (e.type == "receive_weights" || e.type == "load_weights") {
          if (!e.error.empty() && e.error.find("sync") != std::string::npos) {
            // A failed transfer leaves the weights invalid; nothing to re-derive.
            return std::make_pair(json::value(nullptr), e.error);
          }
          lc.weights_loaded();
        } else if (e.type == "generate") {
          lc.check_can_generate();
          return std::nullopt;  // the tokens themselves need the GPU
        } else if (e.type == "is_sleeping") {
          return std::make_pair(json::value(json::object{{"is_sleeping", lc.state().is_sleeping()}}),
                                std::string());
        } else {
          return std::nullopt;
        }
        return std::make_pair(lifecycle_json(lc.state()), std::string());
      }
      if (kind == "memory") {
        auto& b = budget(rank);
        const auto& a = e.args.as_object();
        std::string owner(a.at("owner").as_string()), tag(a.at("tag").as_string());
        if (e.type == "reserve") {
          b.reserve(owner, tag, a.at("bytes").to_number<uint64_t>());
        } else if (e.type == "release") {
          std::optional<uint64_t> n;
          if (auto* x = a.if_contains("bytes"); x && x->is_number()) n = x->to_number<uint64_t>();
          b.release(owner, tag, n);
        } else {
          return std::nullopt;
        }
        return std::make_pair(json::value(json::object{{"free", b.free()}}), std::string());
      }
    } catch (const std::exception& ex) {
      return std::make_pair(json::value(nullptr), std::string(ex.what()));
    }
    return std::nullopt;
  }
};

std::string describe(const TraceEvent& e) {
  return "seq " + std::to_string(e.seq) + ": " + e.from + " -> " + e.to + " " + e.type + " " +
         json::serialize(e.args) + (e.step >= 0 ? " (step " + std::to_string(e.step) + ")" : "");
}

std::string outcome(const json::value& reply, const std::string& error) {
  return error.empty() ? "reply " + json::serialize(reply) : "error: " + error;
}

}  // namespace

ReplayResult replay_trace(const std::filesystem::path& path, const ReplayOptions& opts) {
  std::ostream& out = opts.out ? *opts.out : std::cout;
  Trace t = read_trace(path);
  Machines m;
  m.header = t.header;
  ReplayResult r;
  bool interactive = opts.step;
  for (const auto& e : t.events) {
    if (opts.break_on && e.type == *opts.break_on) {
      r.stopped_because = "--break-on " + *opts.break_on + " at seq " + std::to_string(e.seq);
      out << "break: " << describe(e) << "\n";
      break;
    }
    auto got = m.apply(e);
    ++r.replayed;
    if (interactive) {
      out << describe(e) << "\n  recorded " << outcome(e.reply, e.error) << "\n";
      if (got) out << "  replayed " << outcome(got->first, got->second) << "\n";
      out << "[Enter] next, c continue, q quit > " << std::flush;
      std::string cmd;
      if (!opts.in || !std::getline(*opts.in, cmd) || cmd == "q") {
        r.stopped_because = "quit";
        break;
      }
      if (cmd == "c") interactive = false;
    }
    if (got) {
      ++r.checked;
      const auto& [reply, error] = *got;
      bool same = error.empty() == e.error.empty() &&
                  (error.empty() ? reply == e.reply : error == e.error);
      if (!same) {
        r.divergence = Divergence{e.seq, describe(e), outcome(e.reply, e.error), outcome(reply, error)};
        r.stopped_because = "divergence";
        break;
      }
    }
    if (opts.until_seq && e.seq >= *opts.until_seq) {
      r.stopped_because = "--until " + std::to_string(*opts.until_seq);
      break;
    }
  }
  if (r.stopped_because.empty()) r.stopped_because = "end of trace";
  r.steps = m.steps;
  return r;
}

}  // namespace siesta::actors
