// Log-probabilities, entropy and their backward; sampling modes and reproducibility.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <map>
#include <set>

#include "ops_test_util.hpp"

namespace siesta::kernels {
namespace {
using test::directional_fd;
using test::dot;
using test::random_vec;

std::vector<double> log_softmax(const float* z, int64_t v) {
  double mx = -1e300, s = 0;
  for (int64_t j = 0; j < v; ++j) mx = std::max(mx, double(z[j]));
  for (int64_t j = 0; j < v; ++j) s += std::exp(z[j] - mx);
  std::vector<double> r(static_cast<size_t>(v));
  for (int64_t j = 0; j < v; ++j) r[j] = z[j] - mx - std::log(s);
  return r;
}

TEST(CpuLogprobs, LogprobAndEntropyMatchDoubleReference) {
  auto ops = make_cpu_ops();
  const int64_t n = 3, V = 300;
  auto z = random_vec(n * V, 1, -8, 8);
  std::vector<int32_t> t = {0, 299, 17};
  std::vector<float> lp(n), ent(n);
  ops->token_logprobs(lp.data(), ent.data(), z.data(), t.data(), n, V);
  for (int64_t i = 0; i < n; ++i) {
    auto ls = log_softmax(z.data() + i * V, V);
    double h = 0;
    for (double l : ls) h -= std::exp(l) * l;
    EXPECT_NEAR(lp[i], ls[t[i]], 1e-5);
    EXPECT_NEAR(ent[i], h, 1e-5);
  }
  t[1] = 300;
  EXPECT_THROW(ops->token_logprobs(lp.data(), nullptr, z.data(), t.data(), n, V), KernelError);
}

TEST(CpuLogprobs, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  const int64_t n = 4, V = 50;
  auto z = random_vec(n * V, 2, -3, 3);
  std::vector<int32_t> t = {3, 49, 0, 3};
  auto c = random_vec(n, 3);
  auto loss = [&] {
    std::vector<float> lp(n);
    ops->token_logprobs(lp.data(), nullptr, z.data(), t.data(), n, V);
    return dot(lp, c);
  };
  std::vector<float> dz(n * V, 5.f);
  ops->token_logprobs_backward(dz.data(), z.data(), t.data(), c.data(), n, V);
  auto dir = random_vec(z.size(), 4);
  double fd = directional_fd(z, dir, 1e-2f, loss);
  EXPECT_NEAR(dot(dz, dir), fd, 1e-3 * std::abs(fd) + 1e-4);
}

SamplingRow row(float temp, int top_k, float top_p, uint64_t seed, uint64_t step) {
  SamplingRow r;
  r.temperature = temp, r.top_k = top_k, r.top_p = top_p, r.seed = seed, r.step = step;
  return r;
}

TEST(CpuSampling, GreedyPicksArgmaxAndReportsUnmodifiedLogprob) {
  auto ops = make_cpu_ops();
  const int64_t V = 40;
  auto z = random_vec(2 * V, 5, -2, 2);
  z[13] = 5.f;
  z[V + 39] = 5.f;
  SamplingRow rows[2] = {row(0, 0, 1, 1, 0), row(0, 0, 1, 1, 0)};
  int32_t tok[2];
  float lp[2];
  ops->sample(tok, lp, z.data(), 2, V, rows);
  EXPECT_EQ(tok[0], 13);
  EXPECT_EQ(tok[1], 39);
  EXPECT_NEAR(lp[0], log_softmax(z.data(), V)[13], 1e-5);
}

// Two draws queued into their own slots (a decode step and the one queued behind it) keep
// apart, read in either order; the draw's tokens can feed the next step's input.
TEST(CpuSampling, SlotsKeepQueuedDrawsApart) {
  auto ops = make_cpu_ops();
  const int64_t V = 50;
  auto za = random_vec(2 * V, 8, -2, 2), zb = random_vec(3 * V, 9, -2, 2);
  SamplingRow ra[2] = {row(0, 0, 1, 1, 0), row(1, 0, 1, 5, 3)};
  SamplingRow rb[3] = {row(0.7f, 0, 1, 2, 1), row(0, 0, 1, 1, 0), row(1, 10, 0.9f, 4, 2)};
  int32_t ta[2], tb[3], want_a[2], want_b[3];
  float la[2], lb[3], wla[2], wlb[3];
  ops->sample(want_a, wla, za.data(), 2, V, ra);
  ops->sample(want_b, wlb, zb.data(), 3, V, rb);
  ops->sample_enqueue(0, za.data(), 2, V, ra);
  ops->sample_enqueue(1, zb.data(), 3, V, rb);
  std::vector<int32_t> next(2, -1);
  ops->copy_sampled_tokens(0, next.data(), 2);
  ops->sample_collect(1, tb, lb);
  ops->sample_collect(0, ta, la);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ta[i], want_a[i]) << i;
    EXPECT_EQ(la[i], wla[i]) << i;
    EXPECT_EQ(next[size_t(i)], want_a[i]) << i;
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(tb[i], want_b[i]) << i;
    EXPECT_EQ(lb[i], wlb[i]) << i;
  }
  auto message = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const KernelError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { ops->sample_enqueue(Ops::kSampleSlots, za.data(), 2, V, ra); })
                .find("allowed: 0.."),
            std::string::npos);
  EXPECT_NE(message([&] { ops->copy_sampled_tokens(0, next.data(), 3); }).find("holds 2"),
            std::string::npos);
  EXPECT_NE(message([&] { ops->sample_collect(0, ta, la); }).find("nothing enqueued"),
            std::string::npos)
      << "a draw is collected once";
}

TEST(CpuSampling, SameSeedAndStepReproduceTheDrawWhateverTheBatch) {
  auto ops = make_cpu_ops();
  const int64_t V = 64;
  auto z = random_vec(3 * V, 6, -1, 1);
  // Row 2 repeats row 0's logits and request (seed 42, step 7) at another batch position.
  std::copy(z.begin(), z.begin() + V, z.begin() + 2 * V);
  SamplingRow rows[3] = {row(1, 0, 1, 42, 7), row(1, 0, 1, 3, 7), row(1, 0, 1, 42, 7)};
  int32_t tok[3];
  ops->sample(tok, nullptr, z.data(), 3, V, rows);
  EXPECT_EQ(tok[0], tok[2]);
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 50; ++step) {
    SamplingRow r = row(1, 0, 1, 42, step);
    int32_t t;
    ops->sample(&t, nullptr, z.data(), 1, V, &r);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 10u);  // steps advance the generator
}

TEST(CpuSampling, TemperatureOneFollowsTheSoftmaxDistribution) {
  auto ops = make_cpu_ops();
  std::vector<float> z = {0.f, std::log(2.f), std::log(3.f), std::log(4.f)};  // p = k/10
  std::map<int32_t, int> count;
  const int draws = 20000;
  for (int s = 0; s < draws; ++s) {
    SamplingRow r = row(1, 0, 1, 9, uint64_t(s));
    int32_t t;
    float lp;
    ops->sample(&t, &lp, z.data(), 1, 4, &r);
    count[t]++;
    ASSERT_NEAR(lp, std::log((t + 1) / 10.0), 1e-5);
  }
  // Binomial std of a frequency near 0.3 over 20000 draws is ~0.0032: 0.015 is > 4 sigma.
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(count[t] / double(draws), (t + 1) / 10.0, 0.015) << t;
}

TEST(CpuSampling, TopKAndTopPRestrictTheCandidates) {
  auto ops = make_cpu_ops();
  std::vector<float> z = {1.f, 4.f, 3.f, 2.f, 0.f};  // order by logit: 1, 2, 3, 0, 4
  std::set<int32_t> k2, p_small, p_mid;
  for (uint64_t s = 0; s < 400; ++s) {
    int32_t t;
    SamplingRow r = row(2.f, 2, 1, 1, s);  // high temperature flattens, top-k still binds
    ops->sample(&t, nullptr, z.data(), 1, 5, &r);
    k2.insert(t);
    r = row(1.f, 0, 0.01f, 1, s);  // tiny top-p keeps only the most likely token
    ops->sample(&t, nullptr, z.data(), 1, 5, &r);
    p_small.insert(t);
    // p(1) = 0.644, p(2) = 0.237 at temperature 1: top_p 0.8 keeps {1, 2}
    r = row(1.f, 0, 0.8f, 1, s);
    ops->sample(&t, nullptr, z.data(), 1, 5, &r);
    p_mid.insert(t);
  }
  EXPECT_EQ(k2, (std::set<int32_t>{1, 2}));
  EXPECT_EQ(p_small, (std::set<int32_t>{1}));
  EXPECT_EQ(p_mid, (std::set<int32_t>{1, 2}));
}

}  // namespace
}  // namespace siesta::kernels
