// Step records, their JSON form, and the end-of-run text summary.
#include "siesta/workflows/run_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "scalars.hpp"
#include "siesta/workflows/diagnostics.hpp"

namespace siesta::workflows {

namespace json = boost::json;

// ---- StepRecord --------------------------------------------------------------------------------

double StepRecord::total_ms() const {
  if (step_ms > 0) return step_ms;
  double t = 0;
  for (const auto& p : phases) t += p.ms;
  return t;
}

uint64_t StepRecord::peak_used_bytes() const {
  uint64_t m = device_used_peak;
  for (const auto& s : memory) m = std::max(m, s.used_bytes);
  return m;
}

std::optional<uint64_t> StepRecord::engine_bytes_during_train() const {
  std::optional<uint64_t> e;
  for (const auto& m : memory)
    if (m.phase == "train") e = std::max(e.value_or(0), m.engine_bytes);
  if (stage == "grpo" && device_used_peak > 0)
    e = std::max(e.value_or(0), engine_held_while_training);
  return e;
}

json::object StepRecord::to_json() const {
  json::object o;
  o["step"] = step;
  o["stage"] = stage;
  json::array ph;
  for (const auto& p : phases) ph.push_back(json::object{{"phase", p.phase}, {"ms", p.ms}});
  o["phases"] = std::move(ph);
  o["reward"] = reward ? json::value(*reward) : json::value(nullptr);
  o["loss"] = loss ? json::value(*loss) : json::value(nullptr);
  o["tokens_per_s"] = tokens_per_s;
  json::array mem;
  for (const auto& m : memory)
    mem.push_back(json::object{
        {"phase", m.phase}, {"used_bytes", m.used_bytes}, {"engine_bytes", m.engine_bytes}});
  o["memory"] = std::move(mem);
  o["step_ms"] = total_ms();
  o["grad_norm"] = grad_norm;
  o["lr"] = lr;
  o["generated_tokens"] = generated_tokens;
  o["trained_tokens"] = trained_tokens;
  o["device_used_peak"] = device_used_peak;
  o["engine_held_while_training"] = engine_held_while_training;
  o["sync_gbps"] = sync_gbps;
  return o;
}

namespace {

double number(const json::value& v, const char* what) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  throw WorkflowError(std::string("step record: '") + what + "' is not a number: " +
                      json::serialize(v));
}

const json::value& field(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v) throw WorkflowError(std::string("step record has no '") + key + "': " + json::serialize(o));
  return *v;
}

std::optional<double> optional_number(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  return number(*v, key);
}

}  // namespace

StepRecord StepRecord::from_json(const json::object& o) {
  StepRecord r;
  r.step = static_cast<int64_t>(number(field(o, "step"), "step"));
  r.stage = json::value_to<std::string>(field(o, "stage"));
  if (auto* ph = o.if_contains("phases"); ph && ph->is_array())
    for (const auto& p : ph->as_array())
      r.phases.push_back({json::value_to<std::string>(field(p.as_object(), "phase")),
                          number(field(p.as_object(), "ms"), "ms")});
  r.reward = optional_number(o, "reward");
  r.loss = optional_number(o, "loss");
  r.tokens_per_s = optional_number(o, "tokens_per_s").value_or(0);
  if (auto* mem = o.if_contains("memory"); mem && mem->is_array())
    for (const auto& m : mem->as_array()) {
      const auto& mo = m.as_object();
      r.memory.push_back({json::value_to<std::string>(field(mo, "phase")),
                          static_cast<uint64_t>(number(field(mo, "used_bytes"), "used_bytes")),
                          static_cast<uint64_t>(optional_number(mo, "engine_bytes").value_or(0))});
    }
  r.step_ms = optional_number(o, "step_ms").value_or(0);
  r.grad_norm = optional_number(o, "grad_norm").value_or(0);
  r.lr = optional_number(o, "lr").value_or(0);
  r.generated_tokens = static_cast<int64_t>(optional_number(o, "generated_tokens").value_or(0));
  r.trained_tokens = static_cast<int64_t>(optional_number(o, "trained_tokens").value_or(0));
  r.device_used_peak = static_cast<uint64_t>(optional_number(o, "device_used_peak").value_or(0));
  r.engine_held_while_training =
      static_cast<uint64_t>(optional_number(o, "engine_held_while_training").value_or(0));
  r.sync_gbps = optional_number(o, "sync_gbps").value_or(0);
  return r;
}

json::object EvalPoint::to_json() const {
  json::object o;
  o["step"] = step;
  o["reward"] = reward;
  o["exact_match"] = exact_match ? json::value(*exact_match) : json::value(nullptr);
  o["prompts"] = prompts;
  return o;
}

EvalPoint EvalPoint::from_json(const json::object& o) {
  EvalPoint e;
  e.step = static_cast<int64_t>(number(field(o, "step"), "step"));
  e.reward = number(field(o, "reward"), "reward");
  e.exact_match = optional_number(o, "exact_match");
  e.prompts = static_cast<int>(optional_number(o, "prompts").value_or(0));
  return e;
}

// ---- RunReport ---------------------------------------------------------------------------------

RunReport::RunReport(std::string title) : title_(std::move(title)) {}

void RunReport::add(StepRecord r) { records_.push_back(std::move(r)); }

void RunReport::add_eval(EvalPoint e) { evals_.push_back(e); }

std::vector<EvalPoint> RunReport::evals() const {
  std::map<int64_t, EvalPoint> by_step;
  for (const auto& r : records_)
    if (r.stage == "eval" && r.reward) by_step[r.step] = EvalPoint{r.step, *r.reward, {}, 0};
  for (const auto& e : evals_) by_step[e.step] = e;
  std::vector<EvalPoint> out;
  for (const auto& [s, e] : by_step) out.push_back(e);
  return out;
}

RunReport RunReport::from_metrics(const std::vector<json::object>& events, std::string title) {
  RunReport rep(std::move(title));
  // A resumed run repeats the steps after its last checkpoint: keep the latest of each.
  std::map<int64_t, StepRecord> by_step;
  std::map<int64_t, EvalPoint> evals;
  for (const auto& e : events) {
    auto* ev = e.if_contains("event");
    if (!ev || !ev->is_string()) continue;
    if (ev->get_string() == "step") {
      auto r = StepRecord::from_json(e);
      by_step[r.step] = std::move(r);
    } else if (ev->get_string() == "eval") {
      auto p = EvalPoint::from_json(e);
      evals[p.step] = p;
    }
  }
  for (auto& [s, r] : by_step) rep.records_.push_back(std::move(r));
  for (auto& [s, p] : evals) rep.evals_.push_back(p);
  return rep;
}

std::string sparkline(const std::vector<double>& values, size_t width) {
  static constexpr char levels[] = "_.:-=+*#";
  constexpr int n_levels = sizeof(levels) - 1;
  if (values.empty() || width == 0) return "";
  std::vector<double> b;
  const size_t n = std::min(values.size(), width);
  for (size_t i = 0; i < n; ++i) {
    size_t lo = i * values.size() / n, hi = (i + 1) * values.size() / n;
    double s = 0;
    for (size_t j = lo; j < hi; ++j) s += values[j];
    b.push_back(s / static_cast<double>(hi - lo));
  }
  auto [mn, mx] = std::minmax_element(b.begin(), b.end());
  std::string out;
  for (double v : b) {
    int level = *mx > *mn ? static_cast<int>(std::lround((v - *mn) / (*mx - *mn) * (n_levels - 1)))
                          : (n_levels - 1) / 2;
    out += levels[std::clamp(level, 0, n_levels - 1)];
  }
  return out;
}

namespace {

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(std::lround(q * static_cast<double>(v.size() - 1)))];
}

}  // namespace

std::string RunReport::summary_table() const {
  std::string out = title_ + ": " + std::to_string(records_.size()) + " steps";
  // Stages and phases in the order they first appeared.
  std::vector<std::string> stages;
  for (const auto& r : records_)
    if (std::find(stages.begin(), stages.end(), r.stage) == stages.end()) stages.push_back(r.stage);
  std::string counts;
  for (const auto& st : stages) {
    size_t n = std::count_if(records_.begin(), records_.end(),
                             [&](const StepRecord& r) { return r.stage == st; });
    counts += (counts.empty() ? "" : ", ") + st + " " + std::to_string(n);
  }
  out += counts.empty() ? "\n" : " (" + counts + ")\n";
  if (records_.empty()) return out;

  char line[160];
  out += "\nTime per step, by phase (ms)\n";
  std::snprintf(line, sizeof line, "  %-6s %-14s %6s %10s %10s %10s %7s\n", "stage", "phase",
                "steps", "mean", "p50", "max", "share");
  out += line;
  for (const auto& st : stages) {
    std::vector<std::string> phases;
    std::map<std::string, std::vector<double>> ms;
    std::vector<double> totals;
    for (const auto& r : records_) {
      if (r.stage != st) continue;
      totals.push_back(r.total_ms());
      for (const auto& p : r.phases) {
        if (!ms.count(p.phase)) phases.push_back(p.phase);
        ms[p.phase].push_back(p.ms);
      }
    }
    double stage_total = 0;
    for (double t : totals) stage_total += t;
    auto emit = [&](const std::string& name, const std::vector<double>& v) {
      double sum = 0;
      for (double x : v) sum += x;
      std::snprintf(line, sizeof line, "  %-6s %-14s %6zu %10.1f %10.1f %10.1f %6.1f%%\n",
                    st.c_str(), name.c_str(), v.size(), sum / static_cast<double>(v.size()),
                    percentile(v, 0.5), *std::max_element(v.begin(), v.end()),
                    stage_total > 0 ? 100.0 * sum / stage_total : 0.0);
      out += line;
    };
    for (const auto& p : phases) emit(p, ms[p]);
    emit("(step)", totals);
  }

  // Memory: the peak, and what the engine kept while the trainer trained (the point of sleep).
  uint64_t peak = 0;
  int64_t peak_step = 0;
  std::string peak_phase;  // when a per-phase sample holds the peak
  std::optional<uint64_t> engine_in_train;
  for (const auto& r : records_) {
    if (r.peak_used_bytes() > peak) {
      peak = r.peak_used_bytes();
      peak_step = r.step;
      peak_phase.clear();
      for (const auto& m : r.memory)
        if (m.used_bytes == peak && peak_phase.empty()) peak_phase = m.phase;
    }
    if (auto e = r.engine_bytes_during_train()) engine_in_train = std::max(engine_in_train.value_or(0), *e);
  }
  if (peak > 0) {
    out += "\nPeak device memory: " + detail::human_bytes(static_cast<double>(peak)) + " (step " +
           std::to_string(peak_step) + (peak_phase.empty() ? "" : ", " + peak_phase) + ")\n";
    if (engine_in_train)
      out += "Engine memory while training (max): " +
             detail::human_bytes(static_cast<double>(*engine_in_train)) + "\n";
  }

  // Reward: the rollout reward of the training steps, then the held-out eval passes.
  std::vector<double> train_reward;
  for (const auto& r : records_)
    if (r.reward && r.stage != "eval") train_reward.push_back(*r.reward);
  if (!train_reward.empty()) {
    // One step's reward is noisy (a few prompts): compare the means of the first and last
    // tenth of the steps.
    const size_t w = std::max<size_t>(1, train_reward.size() / 10);
    double first = 0, last = 0;
    for (size_t i = 0; i < w; ++i) {
      first += train_reward[i];
      last += train_reward[train_reward.size() - w + i];
    }
    first /= static_cast<double>(w);
    last /= static_cast<double>(w);
    auto best = std::max_element(train_reward.begin(), train_reward.end());
    out += "\nRollout reward " + fmt("%.3f", first) + " -> " + fmt("%.3f", last) + " (" +
           fmt("%+.3f", last - first) + "; mean of the first and last " + std::to_string(w) +
           (w == 1 ? " step" : " steps") + ", best step " + fmt("%.3f", *best) + ")  |" +
           sparkline(train_reward) + "|\n";
  }
  const auto ev = evals();
  if (!ev.empty()) {
    std::vector<double> v;
    for (const auto& e : ev) v.push_back(e.reward);
    out += "Eval reward " + fmt("%.3f", v.front()) + " -> " + fmt("%.3f", v.back()) + " (" +
           fmt("%+.3f", v.back() - v.front()) + ")  |" + sparkline(v) + "|\n ";
    for (const auto& e : ev) {
      out += " " + fmt("%.3f", e.reward) + " @" + std::to_string(e.step);
      if (e.exact_match) out += " (exact " + fmt("%.2f", *e.exact_match) + ")";
    }
    out += "\n";
  }
  std::vector<double> losses;
  double tok = 0, gbps = 0;
  size_t tok_n = 0, gbps_n = 0;
  for (const auto& r : records_) {
    if (r.loss) losses.push_back(*r.loss);
    if (r.tokens_per_s > 0) {
      tok += r.tokens_per_s;
      ++tok_n;
    }
    if (r.sync_gbps > 0) {
      gbps += r.sync_gbps;
      ++gbps_n;
    }
  }
  if (!losses.empty())
    out += "Loss " + fmt("%.4f", losses.front()) + " -> " + fmt("%.4f", losses.back()) + "  |" +
           sparkline(losses) + "|\n";
  if (tok_n > 0) out += "Tokens/s (mean over steps): " + fmt("%.0f", tok / static_cast<double>(tok_n)) + "\n";
  if (gbps_n > 0)
    out += "Weight sync (mean over steps): " + fmt("%.2f", gbps / static_cast<double>(gbps_n)) + " GB/s\n";
  return out;
}

std::filesystem::path RunReport::write(const std::filesystem::path& run_dir) const {
  std::filesystem::create_directories(run_dir);
  auto write_file = [](const std::filesystem::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::trunc);
    f << text;
    if (!f.flush()) throw WorkflowError(p.string() + ": cannot write the run report");
  };
  write_file(run_dir / "summary.txt", summary_table());
  auto svg_path = run_dir / "report.svg";
  write_file(svg_path, svg());
  return svg_path;
}

}  // namespace siesta::workflows
