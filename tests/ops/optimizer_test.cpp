// AdamW, sum of squares and scaling against direct formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "ops_test_util.hpp"

namespace siesta::kernels {
namespace {
using test::random_vec;

TEST(CpuAdamW, TwoStepsMatchTheDecoupledWeightDecayFormula) {
  auto ops = make_cpu_ops();
  const int64_t n = 20;
  auto p = random_vec(n, 1), g1 = random_vec(n, 2), g2 = random_vec(n, 3);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  std::vector<double> P(p.begin(), p.end()), M(n, 0), Vv(n, 0);
  Ops::AdamW h{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0};
  for (int step = 1; step <= 2; ++step) {
    const auto& g = step == 1 ? g1 : g2;
    h.step = step;
    ops->adamw_step(p.data(), g.data(), m.data(), v.data(), n, h);
    for (int64_t i = 0; i < n; ++i) {
      M[i] = 0.9 * M[i] + 0.1 * g[i];
      Vv[i] = 0.95 * Vv[i] + 0.05 * double(g[i]) * g[i];
      double mh = M[i] / (1 - std::pow(0.9, step)), vh = Vv[i] / (1 - std::pow(0.95, step));
      P[i] -= 1e-2 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * P[i]);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], P[i], 1e-6) << i;
    EXPECT_NEAR(m[i], M[i], 1e-6) << i;
  }
}

TEST(CpuOptimizerHelpers, SumSquaresAccumulatesAndScaleMultiplies) {
  auto ops = make_cpu_ops();
  std::vector<float> x = {1, 2, 3};
  float acc = 10.f;
  ops->sum_squares(&acc, x.data(), 3);
  EXPECT_FLOAT_EQ(acc, 24.f);
  ops->scale(x.data(), 3, 0.5f);
  EXPECT_EQ(x, (std::vector<float>{0.5f, 1.f, 1.5f}));
}

}  // namespace
}  // namespace siesta::kernels
