// The progress display redraws one line on a terminal and writes plain log lines elsewhere.
#include <gtest/gtest.h>

#include <sstream>

#include "siesta/workflows.hpp"

using namespace siesta::workflows;

namespace {

ProgressState state(int64_t step) {
  ProgressState s;
  s.step = step;
  s.total_steps = 10;
  s.stage = "grpo";
  s.phase = "rollout";
  s.reward = 0.25;
  s.loss = 1.5;
  s.tokens_per_s = 812;
  s.device_used_bytes = 3u << 30;
  return s;
}

}  // namespace

TEST(ProgressDisplay, TerminalRedrawsOneLineInPlace) {
  std::ostringstream out;
  ProgressDisplay p(out, true, 200);
  p.phase(state(1));
  p.step_done(state(1));
  p.phase(state(2));
  p.finish();
  std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1) << "only finish() ends the line";
  EXPECT_EQ(std::count(s.begin(), s.end(), '\r'), 3);
  EXPECT_NE(s.find("step 2/10 [##--------] grpo:rollout  reward 0.250  loss 1.5000  812 tok/s  mem 3.00 GiB"),
            std::string::npos) << s;
}

TEST(ProgressDisplay, TerminalLineIsTruncatedToTheWidth) {
  std::ostringstream out;
  ProgressDisplay p(out, true, 30);
  p.step_done(state(3));
  std::string s = out.str();
  auto body = s.substr(1, s.find("\x1b[K") - 1);
  EXPECT_EQ(body.size(), 29u) << body;
}

TEST(ProgressDisplay, MessagesKeepTheStatusLineBelowThem) {
  std::ostringstream out;
  ProgressDisplay p(out, true, 200);
  p.step_done(state(4));
  p.message("checkpoint saved");
  std::string s = out.str();
  auto msg = s.find("\r\x1b[Kcheckpoint saved\n");
  ASSERT_NE(msg, std::string::npos) << s;
  EXPECT_NE(s.find("step 4/10", msg), std::string::npos) << "status redrawn after the message";
}

TEST(ProgressDisplay, PlainOutputHasOneLinePerLoggedStepAndNoControlCharacters) {
  std::ostringstream out;
  ProgressDisplay p(out, false, 0, 3);
  for (int i = 1; i <= 10; ++i) {
    p.phase(state(i));
    p.step_done(state(i));
  }
  p.message("done");
  p.finish();
  std::string s = out.str();
  for (char c : s) EXPECT_TRUE(c == '\n' || (c >= 32 && c < 127)) << int(c);
  // Steps 3, 6, 9 and the last one (10), then the message.
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 5) << s;
  EXPECT_NE(s.find("step=3/10 stage=grpo reward=0.2500 loss=1.5000 tokens_per_s=812 mem_bytes=3221225472\n"),
            std::string::npos) << s;
  EXPECT_NE(s.find("step=10/10"), std::string::npos);
  EXPECT_EQ(s.find("step=4/10"), std::string::npos);
}

TEST(ProgressDisplay, StepRecordsAndEvalPassesInPlainMode) {
  std::ostringstream out;
  ProgressDisplay p(out, false);
  StepRecord r;
  r.step = 7;
  r.stage = "grpo";
  r.phases = {{"rollout", 300.0}, {"train", 200.0}};
  r.step_ms = 500.0;
  r.reward = 0.5;
  r.loss = -0.08;
  r.generated_tokens = 320;
  r.trained_tokens = 680;
  r.device_used_peak = 1u << 30;
  p.step_done(r, 120);
  p.eval_done({20, 0.4375, 0.078125, 64});
  p.eval_done({40, 0.5, {}, 0});
  // 1000 tokens in 0.5 s; memory is the step's peak.
  EXPECT_EQ(out.str(),
            "step=7/120 stage=grpo reward=0.5000 loss=-0.0800 tokens_per_s=2000 mem_bytes=1073741824\n"
            "eval step=20 reward=0.4375 exact_match=0.0781 prompts=64\n"
            "eval step=40 reward=0.5000\n");
}

TEST(ProgressDisplay, EvalOnATerminalKeepsTheStatusLine) {
  std::ostringstream out;
  ProgressDisplay p(out, true, 200);
  p.step_done(state(5));
  p.eval_done({5, 0.75, 0.5, 16});
  std::string s = out.str();
  auto at = s.find("\r\x1b[Keval step=5 reward=0.7500 exact_match=0.5000 prompts=16\n");
  ASSERT_NE(at, std::string::npos) << s;
  EXPECT_NE(s.find("step 5/10", at), std::string::npos);
}
