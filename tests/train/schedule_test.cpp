// Warmup + cosine learning-rate values.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "siesta/train/error.hpp"
#include "siesta/train/schedule.hpp"

using namespace siesta::train;

TEST(LrSchedule, WarmupRampsLinearlyThenCosineDecaysToFloor) {
  LrSchedule s{.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 4, .total_steps = 14};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.25e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(1), 0.50e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(3), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(4), 1e-3);                      // cosine starts at the peak
  EXPECT_NEAR(s.lr_at(9), 1e-4 + 0.5 * 0.9e-3, 1e-15);     // halfway: mean of peak and floor
  double q = 1e-4 + 0.5 * 0.9e-3 * (1 + std::cos(std::numbers::pi * 0.3));
  EXPECT_NEAR(s.lr_at(7), q, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr_at(14), 1e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 1e-4);
  for (int i = 4; i < 14; ++i) EXPECT_GE(s.lr_at(i), s.lr_at(i + 1));
}

TEST(LrSchedule, ConstantWithoutTotalSteps) {
  LrSchedule s{.peak_lr = 2e-4, .warmup_steps = 0, .total_steps = 0};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 2e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(1000), 2e-4);
}

TEST(LrSchedule, ALaterStageStartsItsScheduleAtItsFirstStep) {
  LrSchedule first{.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 4, .total_steps = 14};
  LrSchedule later = first;
  later.start_step = 60;   // the optimizer has taken 60 steps in earlier stages
  for (int i = 0; i < 20; ++i) EXPECT_DOUBLE_EQ(later.lr_at(60 + i), first.lr_at(i)) << i;
  EXPECT_DOUBLE_EQ(later.lr_at(10), first.lr_at(0));   // before its start: its first lr
}

TEST(LrSchedule, MalformedSchedulesAreRefused) {
  EXPECT_THROW((LrSchedule{.peak_lr = 0}.validate()), TrainError);
  EXPECT_THROW((LrSchedule{.peak_lr = 1e-3, .min_lr = 2e-3}.validate()), TrainError);
  EXPECT_THROW((LrSchedule{.peak_lr = 1e-3, .warmup_steps = 10, .total_steps = 5}.validate()),
               TrainError);
  EXPECT_NO_THROW((LrSchedule{.peak_lr = 1e-3, .warmup_steps = 2, .total_steps = 5}.validate()));
}
