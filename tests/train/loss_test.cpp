// GRPO / SFT objectives: hand-computed values, finite-difference gradients, advantage edge cases.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "siesta/train/error.hpp"
#include "siesta/train/loss.hpp"

using namespace siesta::train;

TEST(GroupAdvantages, NormaliseEachGroupByMeanAndStd) {
  std::vector<double> r = {1, 0, 0, 1, /*group 2*/ 0.5, 0.25, 0.25, 0.0};
  auto a = group_advantages(r, 4);
  // group 1: mean .5, unbiased std sqrt(1/3)
  const double s1 = std::sqrt(1.0 / 3.0);
  EXPECT_NEAR(a[0], 0.5 / (s1 + 1e-6), 1e-5);
  EXPECT_NEAR(a[1], -0.5 / (s1 + 1e-6), 1e-5);
  // group 2: mean .25, deviations .25 0 0 -.25, unbiased var .125/3
  const double s2 = std::sqrt(0.125 / 3);
  EXPECT_NEAR(a[4], 0.25 / (s2 + 1e-6), 1e-5);
  EXPECT_FLOAT_EQ(a[5], 0.f);
  EXPECT_NEAR(a[4] + a[5] + a[6] + a[7], 0.0, 1e-5);
  auto population = group_advantages(r, 4, {.unbiased_std = false});
  EXPECT_NEAR(population[0], 0.5 / (0.5 + 1e-6), 1e-5);
  auto centred = group_advantages(r, 4, {.scale_by_std = false});
  EXPECT_NEAR(centred[0], 0.5, 1e-6);
}

TEST(GroupAdvantages, AllEqualRewardsGiveExactZeroNotNaN) {
  // 0.1 three times: the floating mean is not exactly 0.1, yet the advantages must be 0.
  for (double v : {0.0, 0.1, 1.0, 0.7}) {
    auto a = group_advantages({v, v, v}, 3);
    for (float x : a) {
      EXPECT_FALSE(std::isnan(x));
      EXPECT_EQ(x, 0.f);
    }
  }
  auto single = group_advantages({0.3, 0.9}, 1);   // a group of one has no peer
  EXPECT_EQ(single[0], 0.f);
  EXPECT_EQ(single[1], 0.f);
}

TEST(GroupAdvantages, RewardsThatDoNotSplitIntoGroupsAreRefused) {
  EXPECT_THROW(group_advantages({1, 2, 3}, 2), TrainError);
  EXPECT_THROW(group_advantages({1, 2}, 0), TrainError);
}

TEST(GrpoLoss, HandBuiltBatchMatchesHandComputedValues) {
  // 4 rows of 2 tokens; token 0 is prompt (masked), token 1 is trained.
  //   row 0: ratio 1,        A = +1  -> surrogate -1,    grad -1
  //   row 1: ratio e^0.5,    A = +1  -> clipped at 1.2,  grad 0
  //   row 2: ratio e^-0.7,   A = -2  -> clipped at 0.8,  grad 0: -min(.497*-2, .8*-2) = 1.6
  //   row 3: ratio e^0.4,    A = -2  -> unclipped 1.49*-2, grad 2 * e^0.4
  std::vector<float> lp = {-9, -1.0f, -9, -0.5f, -9, -1.7f, -9, -0.6f};
  std::vector<float> old = {-1, -1.0f, -1, -1.0f, -1, -1.0f, -1, -1.0f};
  std::vector<float> adv = {1, 1, -2, -2};
  std::vector<float> mask = {0, 1, 0, 1, 0, 1, 0, 1};
  PolicyLossInput in{4, 2, lp.data(), old.data(), nullptr, adv.data(), mask.data()};
  std::vector<float> g(8, 123.f);
  auto s = grpo_loss(in, {}, {}, g.data());
  const double r3 = std::exp(0.4);
  const double expect = (-1.0 - 1.2 + 1.6 + 2.0 * r3) / 4.0;
  EXPECT_NEAR(s.loss, expect, 1e-6);
  EXPECT_EQ(s.tokens, 4);
  EXPECT_DOUBLE_EQ(s.clip_fraction, 0.5);
  for (int i : {0, 2, 4, 6}) EXPECT_EQ(g[i], 0.f);   // prompt tokens get no gradient
  EXPECT_NEAR(g[1], -1.0 / 4, 1e-7);
  EXPECT_EQ(g[3], 0.f);
  EXPECT_EQ(g[5], 0.f);
  EXPECT_NEAR(g[7], 2.0 * r3 / 4, 1e-6);
}

namespace {
double loss_only(const PolicyLossInput& in, const PolicyLossOptions& o, const LossNorm& n) {
  return grpo_loss(in, o, n, nullptr).loss;
}
}  // namespace

TEST(GrpoLoss, GradientMatchesFiniteDifferencesWithKlAndSeqMean) {
  // Ratios kept away from the clip boundaries so that the loss is smooth where we probe it.
  const int rows = 3, cols = 5;
  std::vector<float> lp, old, ref, mask, adv = {0.8f, -1.3f, 0.4f};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      float base = -0.3f - 0.21f * float(c) - 0.17f * float(r);
      lp.push_back(base);
      old.push_back(base + 0.05f * float((r + c) % 3 - 1));      // ratio within [0.95, 1.05]
      ref.push_back(base + 0.3f * float((2 * r + c) % 5 - 2) / 2);
      mask.push_back(c >= 1 + r % 2 && !(r == 2 && c == 4) ? 1.f : 0.f);
    }
  for (auto agg : {LossAggregation::TokenMean, LossAggregation::SeqMeanTokenMean}) {
    PolicyLossOptions o{.kl_coef = 0.3f, .aggregation = agg};
    PolicyLossInput in{rows, cols, lp.data(), old.data(), ref.data(), adv.data(), mask.data()};
    std::vector<float> g(rows * cols);
    const LossNorm norm = loss_norm_of(rows, cols, mask.data());
    grpo_loss(in, o, norm, g.data());
    for (int i = 0; i < rows * cols; ++i) {
      const float h = 1e-3f;
      std::vector<float> p = lp, m = lp;
      p[i] += h;
      m[i] -= h;
      PolicyLossInput ip = in, im = in;
      ip.logprob = p.data();
      im.logprob = m.data();
      double fd = (loss_only(ip, o, norm) - loss_only(im, o, norm)) / double(p[i] - m[i]);
      EXPECT_NEAR(g[i], fd, 1e-4 + 1e-3 * std::abs(fd)) << "token " << i;
      if (mask[i] == 0) {
        EXPECT_EQ(g[i], 0.f);
      }
    }
  }
}

TEST(GrpoLoss, KlIsZeroWhenPolicyEqualsReference) {
  std::vector<float> lp = {-0.5f, -1.5f}, adv = {0.f}, mask = {1, 1};
  PolicyLossInput in{1, 2, lp.data(), lp.data(), lp.data(), adv.data(), mask.data()};
  std::vector<float> g(2);
  auto s = grpo_loss(in, {.kl_coef = 0.5f}, {}, g.data());
  EXPECT_DOUBLE_EQ(s.kl, 0.0);
  EXPECT_DOUBLE_EQ(s.loss, 0.0);
  EXPECT_EQ(g[0], 0.f);
  PolicyLossInput no_ref = in;
  no_ref.ref_logprob = nullptr;
  EXPECT_THROW(grpo_loss(no_ref, {.kl_coef = 0.5f}, {}, nullptr), TrainError);
}

TEST(GrpoLoss, MicroBatchesWithGlobalNormAddUpToTheFullBatch) {
  const int rows = 4, cols = 3;
  std::vector<float> lp(rows * cols), old(rows * cols), mask(rows * cols), adv = {1, -1, .5f, 2};
  for (int i = 0; i < rows * cols; ++i) {
    lp[i] = -0.1f * float(i + 1);
    old[i] = lp[i] + 0.01f * float(i % 3);
    mask[i] = (i % 3 != 0 || i == 3) ? 1.f : 0.f;
  }
  for (auto agg : {LossAggregation::TokenMean, LossAggregation::SeqMeanTokenMean}) {
    PolicyLossOptions o{.aggregation = agg};
    std::vector<float> g_full(rows * cols), g_parts(rows * cols);
    PolicyLossInput full{rows, cols, lp.data(), old.data(), nullptr, adv.data(), mask.data()};
    double whole = grpo_loss(full, o, {}, g_full.data()).loss;
    LossNorm norm = loss_norm_of(rows, cols, mask.data());
    double parts = 0;
    for (int r0 = 0; r0 < rows; r0 += 2) {
      PolicyLossInput part{2, cols, lp.data() + r0 * cols, old.data() + r0 * cols, nullptr,
                           adv.data() + r0, mask.data() + r0 * cols};
      parts += grpo_loss(part, o, norm, g_parts.data() + r0 * cols).loss;
    }
    EXPECT_NEAR(whole, parts, 1e-9);
    for (int i = 0; i < rows * cols; ++i) EXPECT_NEAR(g_full[i], g_parts[i], 1e-9);
  }
}

TEST(SftLoss, IsMinusMeanLogprobOfTargetTokens) {
  std::vector<float> lp = {-5, -1, -2, -7, -3, -4}, mask = {0, 1, 1, 0, 0, 1};
  std::vector<float> g(6);
  auto s = sft_loss(2, 3, lp.data(), mask.data(), LossAggregation::TokenMean, {}, g.data());
  EXPECT_NEAR(s.loss, (1 + 2 + 4) / 3.0, 1e-12);
  EXPECT_EQ(s.tokens, 3);
  EXPECT_FLOAT_EQ(g[1], -1.f / 3);
  EXPECT_EQ(g[0], 0.f);
  auto q = sft_loss(2, 3, lp.data(), mask.data(), LossAggregation::SeqMeanTokenMean, {}, g.data());
  EXPECT_NEAR(q.loss, (1.5 + 4) / 2, 1e-12);
  EXPECT_FLOAT_EQ(g[5], -0.5f);
  EXPECT_FLOAT_EQ(g[1], -0.25f);
}
