// Tokenizer round trips, deterministic prompts, the held-out split and partial-credit rewards.
#include <gtest/gtest.h>

#include <set>

#include "siesta/train/error.hpp"
#include "siesta/train/task.hpp"
#include "siesta/train/tokenizer.hpp"

using namespace siesta::train;

TEST(ByteTokenizer, RoundTripsBytesAndStopsAtEos) {
  ByteTokenizer tok;
  auto ids = tok.encode("12+7=", true, true);
  ASSERT_EQ(ids.size(), 7u);
  EXPECT_EQ(ids.front(), 256);
  EXPECT_EQ(ids.back(), 257);
  EXPECT_EQ(ids[1], '1');
  EXPECT_EQ(tok.decode(ids), "12+7=");
  std::vector<int32_t> with_tail = {'1', '9', 257, '5'};
  EXPECT_EQ(tok.decode(with_tail), "19");
  EXPECT_EQ(tok.decode(with_tail, false), "195");
  EXPECT_EQ(tok.decode({258, 'a', 258}), "a");
  EXPECT_THROW(tok.decode({264}), TrainError);
}

TEST(Task, AdditionAnswersAreSums) {
  Task t({.kind = TaskKind::Addition, .min_len = 1, .max_len = 3, .seed = 5});
  for (uint64_t i = 0; i < 200; ++i) {
    auto ex = t.train_example(i);
    auto plus = ex.prompt.find('+');
    ASSERT_NE(plus, std::string::npos);
    ASSERT_EQ(ex.prompt.back(), '=');
    long a = std::stol(ex.prompt.substr(0, plus));
    long b = std::stol(ex.prompt.substr(plus + 1, ex.prompt.size() - plus - 2));
    EXPECT_EQ(ex.answer, std::to_string(a + b)) << ex.prompt;
    EXPECT_LE(int(ex.answer.size()), t.max_answer_chars());
    EXPECT_LE(int(ex.prompt.size()), t.max_prompt_chars());
  }
}

TEST(Task, ReversalAndSortingAnswers) {
  Task rev({.kind = TaskKind::Reversal, .min_len = 2, .max_len = 5, .seed = 1});
  auto ex = rev.train_example(3);
  std::string s = ex.prompt.substr(4, ex.prompt.size() - 6);
  EXPECT_EQ(ex.prompt.substr(0, 4), "rev(");
  EXPECT_EQ(ex.answer, std::string(s.rbegin(), s.rend()));
  Task srt({.kind = TaskKind::Sorting, .min_len = 3, .max_len = 6, .seed = 1});
  auto e2 = srt.train_example(7);
  EXPECT_TRUE(std::is_sorted(e2.answer.begin(), e2.answer.end()));
  EXPECT_EQ(e2.prompt.size(), e2.answer.size() + 7);
  EXPECT_LE(int(e2.prompt.size()), srt.max_prompt_chars());
}

TEST(Task, PromptsAreAPureFunctionOfSeedAndIndex) {
  Task a({.kind = TaskKind::Addition, .max_len = 3, .seed = 42});
  Task b({.kind = TaskKind::Addition, .max_len = 3, .seed = 42});
  Task c({.kind = TaskKind::Addition, .max_len = 3, .seed = 43});
  int differ = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(a.train_example(i).prompt, b.train_example(i).prompt);
    differ += a.train_example(i).prompt != c.train_example(i).prompt;
  }
  EXPECT_GT(differ, 40);
}

TEST(Task, HeldOutPromptsNeverAppearInTraining) {
  Task t({.kind = TaskKind::Addition, .min_len = 1, .max_len = 2, .seed = 9});
  auto eval = t.eval_set(40);
  ASSERT_EQ(eval.size(), 40u);
  std::set<std::string> held;
  for (auto& e : eval) {
    EXPECT_TRUE(t.is_held_out(e.prompt));
    held.insert(e.prompt);
  }
  EXPECT_EQ(held.size(), 40u);   // distinct
  for (uint64_t i = 0; i < 3000; ++i) EXPECT_FALSE(held.count(t.train_example(i).prompt));
}

TEST(Task, TooSmallPromptSpaceIsRefused) {
  // Sorting one character of a one-letter alphabet has a single prompt: nothing to hold out.
  Task t({.kind = TaskKind::Sorting, .min_len = 1, .max_len = 1, .alphabet = "a"});
  // Whichever side the one prompt falls on, the other side is empty and must be reported.
  int refused = 0;
  for (bool held_out : {false, true}) {
    try {
      held_out ? t.eval_example(0) : t.train_example(0);
    } catch (const TrainError& e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(refused, 1);
}

TEST(Task, InvalidSpecsAreRefused) {
  EXPECT_THROW(Task({.kind = TaskKind::Addition, .min_len = 0}), TrainError);
  EXPECT_THROW(Task({.kind = TaskKind::Addition, .min_len = 3, .max_len = 2}), TrainError);
  EXPECT_THROW(Task({.kind = TaskKind::Reversal, .alphabet = "a=b"}), TrainError);
  EXPECT_THROW(task_kind_from_name("multiplication"), TrainError);
  EXPECT_EQ(task_kind_from_name("sorting"), TaskKind::Sorting);
}

TEST(Task, RewardGivesOneForExactAndGradedPartialCredit) {
  Task t({.kind = TaskKind::Addition});
  TaskExample ex{"12+7=", "19"};
  EXPECT_DOUBLE_EQ(t.reward(ex, "19"), 1.0);
  double wrong_digit = t.reward(ex, "18");   // format + length + half the positions
  double wrong_len = t.reward(ex, "1");      // format + half length + one of two positions
  double garbage = t.reward(ex, "x+");       // right length only
  double empty = t.reward(ex, "");
  EXPECT_NEAR(wrong_digit, 0.1 + 0.2 + 0.25, 1e-12);
  EXPECT_NEAR(wrong_len, 0.1 + 0.1 + 0.25, 1e-12);
  EXPECT_NEAR(garbage, 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(empty, 0.0);
  EXPECT_GT(wrong_digit, wrong_len);
  EXPECT_GT(wrong_len, garbage);
  EXPECT_GT(garbage, empty);
  EXPECT_LT(t.reward(ex, "1999"), 0.8);
  EXPECT_FALSE(t.score(ex, "18").exact);
  EXPECT_TRUE(t.score(ex, "19").exact);
}
