// Progress output that adapts to where it goes.
#include "siesta/workflows/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "scalars.hpp"

namespace siesta::workflows {

ProgressDisplay::ProgressDisplay(std::ostream& out, bool tty, int columns, int log_every)
    : out_(out), tty_(tty), columns_(columns), log_every_(log_every < 1 ? 1 : log_every) {}

namespace {

// Width of the terminal on fd, or 0 when fd is not a terminal.
int terminal_columns(int fd) {
  if (::isatty(fd) != 1) return 0;
  winsize ws{};
  return ::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 100;
}

}  // namespace

ProgressDisplay ProgressDisplay::for_stdout(int log_every) {
  const int columns = terminal_columns(STDOUT_FILENO);
  return ProgressDisplay(std::cout, columns > 0, columns, log_every);
}

ProgressDisplay ProgressDisplay::for_stderr(int log_every) {
  const int columns = terminal_columns(STDERR_FILENO);
  return ProgressDisplay(std::cerr, columns > 0, columns, log_every);
}

ProgressState ProgressState::of(const StepRecord& r, int64_t total_steps) {
  ProgressState s;
  s.step = r.step;
  s.total_steps = total_steps;
  s.stage = r.stage;
  s.reward = r.reward;
  s.loss = r.loss;
  s.tokens_per_s = r.tokens_per_s;
  // Without a rate from the caller: every token the step produced or trained on, per second.
  const double ms = r.total_ms();
  if (s.tokens_per_s <= 0 && ms > 0)
    s.tokens_per_s = static_cast<double>(r.generated_tokens + r.trained_tokens) / (ms / 1e3);
  s.device_used_bytes = r.peak_used_bytes();
  return s;
}

std::string ProgressDisplay::eval_line(const EvalPoint& e) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "eval step=%lld reward=%.4f", static_cast<long long>(e.step), e.reward);
  std::string line = buf;
  if (e.exact_match) {
    std::snprintf(buf, sizeof buf, " exact_match=%.4f", *e.exact_match);
    line += buf;
  }
  if (e.prompts > 0) line += " prompts=" + std::to_string(e.prompts);
  return line;
}

void ProgressDisplay::eval_done(const EvalPoint& e) { message(eval_line(e)); }

std::string ProgressDisplay::status_line(const ProgressState& s) {
  char buf[256];
  std::string line = "step " + std::to_string(s.step) + "/" + std::to_string(s.total_steps);
  if (s.total_steps > 0) {
    constexpr int kBar = 10;
    int filled = static_cast<int>(kBar * std::min<int64_t>(s.step, s.total_steps) / s.total_steps);
    line += " [" + std::string(filled, '#') + std::string(kBar - filled, '-') + "]";
  }
  if (!s.stage.empty()) line += " " + s.stage + (s.phase.empty() ? "" : ":" + s.phase);
  if (s.reward) {
    std::snprintf(buf, sizeof buf, "  reward %.3f", *s.reward);
    line += buf;
  }
  if (s.loss) {
    std::snprintf(buf, sizeof buf, "  loss %.4f", *s.loss);
    line += buf;
  }
  if (s.tokens_per_s > 0) {
    std::snprintf(buf, sizeof buf, "  %.0f tok/s", s.tokens_per_s);
    line += buf;
  }
  if (s.device_used_bytes > 0)
    line += "  mem " + detail::human_bytes(static_cast<double>(s.device_used_bytes));
  return line;
}

std::string ProgressDisplay::log_line(const ProgressState& s) {
  char buf[256];
  std::string line = "step=" + std::to_string(s.step) + "/" + std::to_string(s.total_steps);
  if (!s.stage.empty()) line += " stage=" + s.stage;
  if (s.reward) {
    std::snprintf(buf, sizeof buf, " reward=%.4f", *s.reward);
    line += buf;
  }
  if (s.loss) {
    std::snprintf(buf, sizeof buf, " loss=%.4f", *s.loss);
    line += buf;
  }
  if (s.tokens_per_s > 0) {
    std::snprintf(buf, sizeof buf, " tokens_per_s=%.0f", s.tokens_per_s);
    line += buf;
  }
  if (s.device_used_bytes > 0) line += " mem_bytes=" + std::to_string(s.device_used_bytes);
  return line;
}

void ProgressDisplay::redraw(const ProgressState& s) {
  std::string line = status_line(s);
  if (columns_ > 1 && static_cast<int>(line.size()) > columns_ - 1)
    line.resize(static_cast<size_t>(columns_ - 1));  // a wrapped line cannot be redrawn with \r
  // \r then "erase to end of line": a shorter line leaves no tail of the previous one.
  out_ << '\r' << line << "\x1b[K" << std::flush;
  last_status_ = std::move(line);
  status_shown_ = true;
}

void ProgressDisplay::phase(const ProgressState& s) {
  std::lock_guard lock(mu_);
  if (tty_) redraw(s);
}

void ProgressDisplay::step_done(const ProgressState& s) {
  std::lock_guard lock(mu_);
  if (tty_) {
    redraw(s);
    return;
  }
  if (s.step % log_every_ == 0 || s.step == s.total_steps) out_ << log_line(s) << '\n' << std::flush;
}

void ProgressDisplay::message(std::string_view line) {
  std::lock_guard lock(mu_);
  if (tty_ && status_shown_) {
    out_ << "\r\x1b[K" << line << '\n' << last_status_ << std::flush;
    return;
  }
  out_ << line << '\n' << std::flush;
}

void ProgressDisplay::finish() {
  std::lock_guard lock(mu_);
  if (tty_ && status_shown_) out_ << '\n' << std::flush;
  status_shown_ = false;
}

}  // namespace siesta::workflows
