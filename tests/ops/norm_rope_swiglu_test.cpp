// RMSNorm, rotary embeddings and SwiGLU against double-precision references and finite
// differences.
#include <gtest/gtest.h>

#include <cmath>

#include "ops_test_util.hpp"

namespace siesta::kernels {
namespace {
using test::directional_fd;
using test::dot;
using test::random_vec;

TEST(CpuRmsNorm, ForwardMatchesDoubleReference) {
  auto ops = make_cpu_ops();
  const int64_t n = 3, d = 16;
  auto x = random_vec(n * d, 1, -2, 2), w = random_vec(d, 2, 0.5, 1.5);
  std::vector<float> out(n * d), rstd(n);
  ops->rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, d, 1e-5f);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(x[i * d + j]) * x[i * d + j];
    double r = 1.0 / std::sqrt(ss / d + 1e-5);
    EXPECT_NEAR(rstd[i], r, 1e-6 * r);
    for (int64_t j = 0; j < d; ++j) EXPECT_NEAR(out[i * d + j], x[i * d + j] * r * w[j], 1e-6);
  }
}

TEST(CpuRmsNorm, BackwardAccumulatesFiniteDifferenceGradients) {
  auto ops = make_cpu_ops();
  const int64_t n = 4, d = 24;
  auto x = random_vec(n * d, 3, -2, 2), w = random_vec(d, 4, 0.5, 1.5);
  auto c = random_vec(n * d, 5);
  auto loss = [&] {
    std::vector<float> out(n * d), rstd(n);
    ops->rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, d, 1e-5f);
    return dot(out, c);
  };
  std::vector<float> out(n * d), rstd(n);
  ops->rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, d, 1e-5f);
  std::vector<float> dx(n * d, 1.f), dw(d, 1.f);  // start at 1: the op must add, not overwrite
  ops->rmsnorm_backward(dx.data(), dw.data(), c.data(), x.data(), w.data(), rstd.data(), n, d);
  for (auto& v : dx) v -= 1.f;
  for (auto& v : dw) v -= 1.f;
  auto dir_x = random_vec(n * d, 6), dir_w = random_vec(d, 7);
  // fp32 forward, central difference with eps 1e-2: agreement to ~1e-3 relative.
  double fd_x = directional_fd(x, dir_x, 1e-2f, loss);
  EXPECT_NEAR(dot(dx, dir_x), fd_x, 2e-3 * std::abs(fd_x) + 1e-4);
  double fd_w = directional_fd(w, dir_w, 1e-2f, loss);
  EXPECT_NEAR(dot(dw, dir_w), fd_w, 2e-3 * std::abs(fd_w) + 1e-4);
}

TEST(CpuRope, TableMatchesHfFormulaWithLinearScaling) {
  const int hd = 8;
  auto t = rope_cos_sin_table(10, hd, 500.0, 2.0);
  ASSERT_EQ(t.size(), size_t(10 * hd));
  for (int p = 0; p < 10; ++p)
    for (int j = 0; j < hd / 2; ++j) {
      double angle = (p / 2.0) / std::pow(500.0, 2.0 * j / hd);
      EXPECT_NEAR(t[p * hd + j], std::cos(angle), 1e-6);
      EXPECT_NEAR(t[p * hd + hd / 2 + j], std::sin(angle), 1e-6);
    }
}

TEST(CpuRope, RotatesHalfSplitPairsAndInverseRestores) {
  auto ops = make_cpu_ops();
  const int hd = 8, heads = 3;
  const int64_t n = 4;
  auto table = rope_cos_sin_table(32, hd, 10000.0);
  std::vector<int32_t> pos = {0, 5, 17, 31};
  auto x = random_vec(n * heads * hd, 8);
  auto y = x;
  ops->rope(y.data(), pos.data(), n, heads, hd, table.data(), false);
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < heads; ++h)
      for (int j = 0; j < hd / 2; ++j) {
        double angle = pos[t] / std::pow(10000.0, 2.0 * j / hd);
        size_t base = size_t((t * heads + h) * hd);
        double a = x[base + j], b = x[base + j + hd / 2];
        EXPECT_NEAR(y[base + j], a * std::cos(angle) - b * std::sin(angle), 1e-5);
        EXPECT_NEAR(y[base + j + hd / 2], b * std::cos(angle) + a * std::sin(angle), 1e-5);
      }
  ops->rope(y.data(), pos.data(), n, heads, hd, table.data(), true);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
}

TEST(CpuSwiglu, ForwardMatchesReferenceAndBackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  const int64_t n = 50;
  auto g = random_vec(n, 9, -4, 4), u = random_vec(n, 10, -2, 2), c = random_vec(n, 11);
  std::vector<float> h(n);
  ops->swiglu_forward(h.data(), g.data(), u.data(), n);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_NEAR(h[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-5);
  auto loss = [&] {
    std::vector<float> hh(n);
    ops->swiglu_forward(hh.data(), g.data(), u.data(), n);
    return dot(hh, c);
  };
  std::vector<float> dg(n, 7.f), du(n, 7.f);  // overwritten, whatever was there
  ops->swiglu_backward(dg.data(), du.data(), c.data(), g.data(), u.data(), n);
  auto dir_g = random_vec(n, 12), dir_u = random_vec(n, 13);
  double fd_g = directional_fd(g, dir_g, 1e-2f, loss);
  EXPECT_NEAR(dot(dg, dir_g), fd_g, 1e-3 * std::abs(fd_g) + 1e-4);
  double fd_u = directional_fd(u, dir_u, 1e-2f, loss);
  EXPECT_NEAR(dot(du, dir_u), fd_u, 1e-3 * std::abs(fd_u) + 1e-4);
}

}  // namespace
}  // namespace siesta::kernels
