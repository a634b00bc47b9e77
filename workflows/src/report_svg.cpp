// The run report as a hand-written SVG: reward curve, per-step phase timeline (stacked bars)
// and device memory, one panel each, sharing the step axis.
#include <algorithm>
#include <array>
#include <cstdio>
#include <map>

#include "scalars.hpp"
#include "siesta/workflows/run_report.hpp"

namespace siesta::workflows {

namespace {

constexpr double kWidth = 960, kLeft = 80, kRight = 170, kPanelH = 190, kPanelGap = 70, kTop = 50;
constexpr double kPlotW = kWidth - kLeft - kRight;

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

const char* color(size_t i) {
  static const char* palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

struct Panel {
  double top;
  std::string& out;

  double y(double v, double lo, double hi) const {
    return top + kPanelH - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * kPanelH;
  }
  void frame(const std::string& title, const std::string& lo_text, const std::string& hi_text) {
    out += "<text x=\"" + num(kLeft) + "\" y=\"" + num(top - 12) +
           "\" font-size=\"14\" font-weight=\"bold\">" + esc(title) + "</text>\n";
    out += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(top) + "\" x2=\"" + num(kLeft) +
           "\" y2=\"" + num(top + kPanelH) + "\" stroke=\"#444\"/>\n";
    out += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(top + kPanelH) + "\" x2=\"" +
           num(kLeft + kPlotW) + "\" y2=\"" + num(top + kPanelH) + "\" stroke=\"#444\"/>\n";
    out += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(top + kPanelH) +
           "\" font-size=\"11\" text-anchor=\"end\">" + esc(lo_text) + "</text>\n";
    out += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(top + 10) +
           "\" font-size=\"11\" text-anchor=\"end\">" + esc(hi_text) + "</text>\n";
  }
  void x_labels(const std::string& first, const std::string& last) {
    out += "<text x=\"" + num(kLeft) + "\" y=\"" + num(top + kPanelH + 16) +
           "\" font-size=\"11\">" + esc(first) + "</text>\n";
    out += "<text x=\"" + num(kLeft + kPlotW) + "\" y=\"" + num(top + kPanelH + 16) +
           "\" font-size=\"11\" text-anchor=\"end\">" + esc(last) + "</text>\n";
  }
  void legend(size_t row, const std::string& name, const char* fill, bool line = false) {
    double y0 = top + 8 + 18 * static_cast<double>(row);
    double x0 = kLeft + kPlotW + 16;
    if (line)
      out += "<line x1=\"" + num(x0) + "\" y1=\"" + num(y0 + 5) + "\" x2=\"" + num(x0 + 12) +
             "\" y2=\"" + num(y0 + 5) + "\" stroke=\"" + fill + "\" stroke-width=\"2\"/>\n";
    else
      out += "<rect x=\"" + num(x0) + "\" y=\"" + num(y0) + "\" width=\"12\" height=\"10\" fill=\"" +
             fill + "\"/>\n";
    out += "<text x=\"" + num(x0 + 18) + "\" y=\"" + num(y0 + 10) + "\" font-size=\"11\">" +
           esc(name) + "</text>\n";
  }
  void empty(const std::string& why) {
    out += "<text x=\"" + num(kLeft + kPlotW / 2) + "\" y=\"" + num(top + kPanelH / 2) +
           "\" font-size=\"12\" text-anchor=\"middle\" fill=\"#888\">" + esc(why) + "</text>\n";
  }
};

}  // namespace

std::string RunReport::svg() const {
  const double height = kTop + 3 * (kPanelH + kPanelGap);
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(kWidth) + "\" height=\"" +
         num(height) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) +
         "\" font-family=\"sans-serif\">\n";
  out += "<rect x=\"0\" y=\"0\" width=\"" + num(kWidth) + "\" height=\"" + num(height) +
         "\" fill=\"white\"/>\n";
  out += "<text x=\"" + num(kLeft) + "\" y=\"24\" font-size=\"18\">" + esc(title_) + "</text>\n";

  const size_t n = records_.size();
  int64_t first_step = n ? records_.front().step : 0, last_step = n ? records_.back().step : 0;
  for (const auto& r : records_) {
    first_step = std::min(first_step, r.step);
    last_step = std::max(last_step, r.step);
  }
  auto x_of_step = [&](int64_t s) {
    return kLeft + (last_step > first_step ? static_cast<double>(s - first_step) /
                                                 static_cast<double>(last_step - first_step)
                                           : 0.5) * kPlotW;
  };
  // 1. Reward: the rollout reward of training steps as a line, held-out eval passes as a
  // dashed line through dots (the curve that shows learning).
  const auto evals = this->evals();
  for (size_t i = 0; i < evals.size(); ++i) {
    const bool first = n == 0 && i == 0;
    first_step = first ? evals[i].step : std::min(first_step, evals[i].step);
    last_step = first ? evals[i].step : std::max(last_step, evals[i].step);
  }
  const std::string first_label = "step " + std::to_string(first_step);
  const std::string last_label = "step " + std::to_string(last_step);
  {
    Panel p{kTop + 20, out};
    double lo = 0, hi = 1;
    for (const auto& r : records_)
      if (r.reward) {
        lo = std::min(lo, *r.reward);
        hi = std::max(hi, *r.reward);
      }
    for (const auto& e : evals) {
      lo = std::min(lo, e.reward);
      hi = std::max(hi, e.reward);
    }
    p.frame("Task reward", label(lo), label(hi));
    std::string pts;
    for (const auto& r : records_)
      if (r.reward && r.stage != "eval")
        pts += num(x_of_step(r.step)) + "," + num(p.y(*r.reward, lo, hi)) + " ";
    size_t legend_row = 0;
    if (!pts.empty()) {
      pts.pop_back();
      out += "<polyline class=\"reward-curve\" fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"2\" points=\"" +
             pts + "\"/>\n";
      p.legend(legend_row++, "rollout reward", "#4e79a7", true);
    }
    if (!evals.empty()) {
      std::string ept;
      for (const auto& e : evals) ept += num(x_of_step(e.step)) + "," + num(p.y(e.reward, lo, hi)) + " ";
      ept.pop_back();
      if (evals.size() > 1)
        out += "<polyline class=\"eval-curve\" fill=\"none\" stroke=\"#e15759\" stroke-width=\"1.5\" "
               "stroke-dasharray=\"4,3\" points=\"" + ept + "\"/>\n";
      for (const auto& e : evals) {
        std::string tip = "eval at step " + std::to_string(e.step) + ": reward " + label(e.reward);
        if (e.exact_match) tip += ", exact " + label(*e.exact_match);
        out += "<circle class=\"eval-point\" cx=\"" + num(x_of_step(e.step)) + "\" cy=\"" +
               num(p.y(e.reward, lo, hi)) + "\" r=\"4\" fill=\"#e15759\"><title>" + esc(tip) +
               "</title></circle>\n";
      }
      p.legend(legend_row++, "held-out eval", "#e15759");
    }
    if (legend_row == 0) p.empty("no reward recorded");
    if (n || !evals.empty()) p.x_labels(first_label, last_label);
  }

  // 2. Phase timeline: one stacked bar per step, phases in the order they ran.
  {
    Panel p{kTop + 20 + kPanelH + kPanelGap, out};
    std::vector<std::string> phases;
    double max_total = 0;
    for (const auto& r : records_) {
      max_total = std::max(max_total, r.total_ms());
      for (const auto& ph : r.phases)
        if (std::find(phases.begin(), phases.end(), ph.phase) == phases.end())
          phases.push_back(ph.phase);
    }
    p.frame("Time per step by phase (ms)", "0", label(max_total));
    if (max_total <= 0) p.empty("no phase timings recorded");
    const double band = n ? kPlotW / static_cast<double>(n) : kPlotW;
    const double bar = std::max(band * 0.85, 0.5);
    for (size_t i = 0; i < n && max_total > 0; ++i) {
      const auto& r = records_[i];
      double acc = 0;
      for (const auto& ph : r.phases) {
        size_t c = static_cast<size_t>(std::find(phases.begin(), phases.end(), ph.phase) - phases.begin());
        double y1 = p.y(acc + ph.ms, 0, max_total), y0 = p.y(acc, 0, max_total);
        out += "<rect class=\"phase\" x=\"" + num(kLeft + band * static_cast<double>(i)) +
               "\" y=\"" + num(y1) + "\" width=\"" + num(bar) + "\" height=\"" + num(y0 - y1) +
               "\" fill=\"" + color(c) + "\"><title>step " + std::to_string(r.step) + " " +
               esc(r.stage) + " " + esc(ph.phase) + ": " + label(ph.ms) + " ms</title></rect>\n";
        acc += ph.ms;
      }
    }
    for (size_t i = 0; i < phases.size(); ++i) p.legend(i, phases[i], color(i));
    if (n) p.x_labels(first_label, last_label);
  }

  // 3. Device memory through each step, on the same bands as the phase bars: with per-phase
  // samples, one point at the end of every phase (so the engine's sleep shows inside the
  // step); otherwise the step's peak at the middle of its band.
  {
    Panel p{kTop + 20 + 2 * (kPanelH + kPanelGap), out};
    double hi = 0;
    bool engine = false;
    for (const auto& r : records_) {
      hi = std::max(hi, static_cast<double>(r.peak_used_bytes()));
      engine = engine || r.engine_bytes_during_train().has_value();
      for (const auto& m : r.memory) engine = engine || m.engine_bytes > 0;
    }
    p.frame("Device memory through each step", "0", detail::human_bytes(hi));
    if (hi <= 0) p.empty("no memory samples recorded");
    const double band = n ? kPlotW / static_cast<double>(n) : kPlotW;
    // (x, used, engine or -1) points of step i.
    auto points = [&](size_t i) {
      const auto& r = records_[i];
      std::vector<std::array<double, 3>> pts;
      const double x0 = kLeft + band * static_cast<double>(i), w = band * 0.85;
      double total = 0;
      for (const auto& ph : r.phases) total += ph.ms;
      if (!r.memory.empty() && total > 0) {
        size_t next = 0;  // samples follow the phases in order; a phase may repeat
        for (const auto& m : r.memory) {
          // The sample of a phase sits at that phase's end; unknown phases at the step's end.
          double at = total;
          double end = 0;
          for (size_t k = 0; k < r.phases.size(); ++k) {
            end += r.phases[k].ms;
            if (k < next || r.phases[k].phase != m.phase) continue;
            at = end;
            next = k + 1;
            break;
          }
          pts.push_back({x0 + w * at / total, static_cast<double>(m.used_bytes),
                         static_cast<double>(m.engine_bytes)});
        }
      } else if (r.measured_memory()) {
        auto e = r.engine_bytes_during_train();
        pts.push_back({x0 + w / 2, static_cast<double>(r.peak_used_bytes()),
                       e ? static_cast<double>(*e) : -1.0});
      }
      return pts;
    };
    std::string used, held;
    size_t samples = 0;
    for (size_t i = 0; i < n; ++i)
      for (const auto& pt : points(i)) {
        used += num(pt[0]) + "," + num(p.y(pt[1], 0, hi)) + " ";
        if (pt[2] >= 0) held += num(pt[0]) + "," + num(p.y(pt[2], 0, hi)) + " ";
        ++samples;
      }
    if (hi > 0 && samples > 0) {
      used.pop_back();
      out += "<polyline class=\"memory-used\" fill=\"none\" stroke=\"#59a14f\" stroke-width=\"2\" points=\"" +
             used + "\"/>\n";
      p.legend(0, "in use", "#59a14f", true);
      if (engine && !held.empty()) {
        held.pop_back();
        out += "<polyline class=\"memory-engine\" fill=\"none\" stroke=\"#b07aa1\" stroke-width=\"2\" "
               "stroke-dasharray=\"5,3\" points=\"" + held + "\"/>\n";
        p.legend(1, "held by the engine", "#b07aa1", true);
      }
    }
    if (n) p.x_labels(first_label, last_label);
  }
  out += "</svg>\n";
  return out;
}

}  // namespace siesta::workflows
