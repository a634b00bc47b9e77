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
