#include "siesta/actors/trace_tools.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

namespace siesta::actors {
namespace json = boost::json;

json::object chrome_trace(const Trace& t) {
  json::array ev;
  std::map<std::string, int> tid;
  auto track = [&](const std::string& name) {
    auto [it, added] = tid.emplace(name, int(tid.size()) + 1);
    if (added)
      ev.push_back(json::object{{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", it->second},
                                {"args", json::object{{"name", name}}}});
    return it->second;
  };
  track("step phases");
  // Step phases as slices on their own track, from each phase event to the next one.
  struct Open { std::string name; int64_t t; int step; };
  std::vector<Open> phases;
  int64_t last_t = 0;
  for (const auto& e : t.events) {
    last_t = std::max(last_t, e.t_ns + e.dur_ns);
    if (e.type == "phase" && e.to.ends_with("/0") && e.args.is_object())
      phases.push_back({std::string(e.args.as_object().at("phase").as_string()), e.t_ns, e.step});
  }
  for (size_t i = 0; i < phases.size(); ++i) {
    int64_t end = i + 1 < phases.size() ? phases[i + 1].t : last_t;
    ev.push_back(json::object{{"ph", "X"}, {"name", phases[i].name}, {"cat", "phase"}, {"pid", 1},
                              {"tid", 1}, {"ts", double(phases[i].t) / 1e3},
                              {"dur", double(end - phases[i].t) / 1e3},
                              {"args", json::object{{"step", phases[i].step}}}});
  }
  for (const auto& e : t.events) {
    if (e.type == "phase") continue;
    json::object args{{"seq", e.seq}, {"from", e.from}, {"args", e.args}};
    if (!e.error.empty()) args["error"] = e.error;
    ev.push_back(json::object{{"ph", "X"}, {"name", e.type}, {"cat", e.phase.empty() ? "msg" : e.phase},
                              {"pid", 1}, {"tid", track(e.to)}, {"ts", double(e.t_ns) / 1e3},
                              {"dur", std::max(0.001, double(e.dur_ns) / 1e3)}, {"args", args}});
    if (auto* used = e.mem.if_contains("device_used"); used && used->is_number()) {
      json::object c{{"device_used_bytes", used->to_number<double>()}};
      if (auto* held = e.mem.if_contains("held"); held && held->is_object())
        for (auto& [k, v] : held->as_object()) c[k] = v;
      ev.push_back(json::object{{"ph", "C"}, {"name", "memory " + e.to}, {"pid", 1},
                                {"ts", double(e.t_ns + e.dur_ns) / 1e3}, {"args", c}});
    }
  }
  return json::object{{"traceEvents", ev}, {"displayTimeUnit", "ms"},
                      {"otherData", json::object{{"source", "siesta trace export"}}}};
}

void export_chrome(const std::filesystem::path& trace, const std::filesystem::path& out) {
  auto doc = chrome_trace(read_trace(trace));
  std::ofstream f(out);
  if (!f) throw std::runtime_error("cannot write '" + out.string() + "'");
  f << json::serialize(doc) << "\n";
}

PhaseBreakdown phase_breakdown(const Trace& t) {
  PhaseBreakdown b;
  struct P { std::string name; int step; int64_t t; };
  std::vector<P> ps;
  std::map<int, int64_t> step_end;
  for (const auto& e : t.events) {
    if (e.step >= 0) step_end[e.step] = std::max(step_end[e.step], e.t_ns + e.dur_ns);
    if (e.type == "phase" && e.to.ends_with("/0") && e.args.is_object())
      ps.push_back({std::string(e.args.as_object().at("phase").as_string()), e.step, e.t_ns});
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    int64_t end = (i + 1 < ps.size() && ps[i + 1].step == ps[i].step) ? ps[i + 1].t
                                                                      : step_end[ps[i].step];
    double ms = double(std::max<int64_t>(0, end - ps[i].t)) / 1e6;
    if (std::find(b.phases.begin(), b.phases.end(), ps[i].name) == b.phases.end())
      b.phases.push_back(ps[i].name);
    b.ms[ps[i].step][ps[i].name] += ms;
    b.step_ms[ps[i].step] += ms;
  }
  return b;
}

std::string format_summary(const PhaseBreakdown& b) {
  if (b.step_ms.empty()) return "no step phases in this trace\n";
  std::string s;
  char buf[64];
  s += "  step";
  for (auto& p : b.phases) { std::snprintf(buf, sizeof buf, " %12s", p.c_str()); s += buf; }
  s += "     total_ms\n";
  std::map<std::string, double> sum;
  double total = 0;
  for (auto& [step, per] : b.ms) {
    std::snprintf(buf, sizeof buf, "%6d", step);
    s += buf;
    for (auto& p : b.phases) {
      double v = per.count(p) ? per.at(p) : 0.0;
      sum[p] += v;
      std::snprintf(buf, sizeof buf, " %12.2f", v);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, " %12.2f\n", b.step_ms.at(step));
    s += buf;
    total += b.step_ms.at(step);
  }
  double n = double(b.ms.size());
  s += "  mean";
  for (auto& p : b.phases) { std::snprintf(buf, sizeof buf, " %12.2f", sum[p] / n); s += buf; }
  std::snprintf(buf, sizeof buf, " %12.2f\n", total / n);
  s += buf;
  s += "  share";
  for (auto& p : b.phases) {
    std::snprintf(buf, sizeof buf, " %11.1f%%", total > 0 ? 100.0 * sum[p] / total : 0.0);
    s += buf;
  }
  s += "\n";
  return s;
}

}  // namespace siesta::actors
