// The live view of a run: on a terminal one status line redrawn in place (step, stage:phase,
// reward, loss, tokens/s, device memory); otherwise (a log file, CI, a pipe) plain key=value
// lines, one per logged step, that never contain control characters.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "siesta/workflows/run_report.hpp"

namespace siesta::workflows {

struct ProgressState {
  int64_t step = 0;         // completed (step_done) or current (phase) step, from 1
  int64_t total_steps = 0;
  std::string stage;        // sft, grpo, eval
  std::string phase;        // rollout, train, sync, ...
  std::optional<double> reward;
  std::optional<double> loss;
  double tokens_per_s = 0;
  uint64_t device_used_bytes = 0;

  // A finished step as the display shows it (device memory: the step's peak).
  static ProgressState of(const StepRecord& r, int64_t total_steps);
};

class ProgressDisplay {
 public:
  // tty: redraw in place, truncated to `columns` (0 = no limit) so the line never wraps.
  // Plain: a line for every log_every-th step and the last one.
  ProgressDisplay(std::ostream& out, bool tty, int columns = 0, int log_every = 1);
  // stdout / stderr: redrawn in place when it is a terminal (its width from the terminal),
  // plain log lines otherwise (a file, a pipe, CI).
  static ProgressDisplay for_stdout(int log_every = 1);
  static ProgressDisplay for_stderr(int log_every = 1);

  void phase(const ProgressState& s);      // a phase started; shown only on a terminal
  void step_done(const ProgressState& s);  // a step finished
  void step_done(const StepRecord& r, int64_t total_steps) { step_done(ProgressState::of(r, total_steps)); }
  // An eval pass: always a whole line ("eval step=20 reward=0.4370 exact_match=0.0781 prompts=64").
  void eval_done(const EvalPoint& e);
  void message(std::string_view line);     // a whole line, kept above the status line
  void finish();                           // ends the status line
  bool is_tty() const { return tty_; }

  // "step 12/100 [###-------] grpo:rollout  reward 0.412  loss 1.2300  812 tok/s  mem 1.20 GiB"
  static std::string status_line(const ProgressState& s);
  // "step=12/100 stage=grpo reward=0.412 loss=1.2300 tokens_per_s=812 mem_bytes=1288490188"
  static std::string log_line(const ProgressState& s);
  static std::string eval_line(const EvalPoint& e);

 private:
  void redraw(const ProgressState& s);
  std::ostream& out_;
  bool tty_;
  int columns_;
  int log_every_;
  bool status_shown_ = false;
  std::string last_status_;
  std::mutex mu_;
};

}  // namespace siesta::workflows
