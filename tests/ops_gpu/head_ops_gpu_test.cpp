// CUDA backend vs double-precision host references: token log-probs (+ entropy) and their
// backward; sampling (greedy, temperature, top-k, top-p) checked for determinism per request
// and for drawing from the intended distribution.
#include <algorithm>
#include <cmath>
#include <map>

#include "gpu_buffers.hpp"

namespace siesta::kernels::test {
namespace {

std::vector<double> log_softmax(const float* x, int64_t vocab) {
  double mx = -INFINITY, sum = 0;
  for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, double(x[j]));
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(x[j]) - mx);
  std::vector<double> r(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) r[size_t(j)] = double(x[j]) - mx - std::log(sum);
  return r;
}

TEST_F(OpsGpu, TokenLogprobsEntropyAndBackwardMatchReference) {
  SIESTA_TRACE_SEED();
  for (int64_t vocab : {1000, 1003}) {  // vectorised and scalar paths
    const int64_t n = 16;
    const auto L = randn_bf16(size_t(n * vocab), rng, 3.f);
    std::vector<int32_t> tg(static_cast<size_t>(n));
    for (auto& t : tg) t = int32_t(rng() % uint64_t(vocab));
    tg[3] = -100;  // ignore index: logprob 0, gradient row 0
    const auto DLP = randn_f32(size_t(n), rng);
    auto logits = upload_bf16(*ops, L);
    auto targets = upload(*ops, tg);
    auto dlp = upload(*ops, DLP);
    DevBuf lp(size_t(n) * 4), ent(size_t(n) * 4), dl(size_t(n * vocab) * 2);
    lp.poison();
    ent.poison();
    dl.poison();
    ops->token_logprobs(lp.as<float>(), ent.as<float>(), logits->get(), targets->as<int32_t>(), n,
                        vocab);
    ops->token_logprobs_backward(dl.get(), logits->get(), targets->as<int32_t>(),
                                 dlp->as<float>(), n, vocab);
    std::vector<double> lpr(static_cast<size_t>(n)), entr(static_cast<size_t>(n)), dlr(size_t(n * vocab));
    for (int64_t i = 0; i < n; ++i) {
      const auto ls = log_softmax(&L[size_t(i * vocab)], vocab);
      const int32_t t = tg[size_t(i)];
      const bool valid = t >= 0;
      lpr[size_t(i)] = valid ? ls[size_t(t)] : 0;
      double h = 0;
      for (double l : ls) h -= std::exp(l) * l;
      entr[size_t(i)] = h;
      for (int64_t j = 0; j < vocab; ++j)
        dlr[size_t(i * vocab + j)] =
            valid ? DLP[size_t(i)] * (double(j == t) - std::exp(ls[size_t(j)])) : 0.0;
    }
    // fp32 arithmetic on exact bf16 inputs: 1e-4; the gradient is rounded to bf16: 1e-2.
    EXPECT_LT(rel_err(download<float>(*ops, lp, size_t(n)), lpr), 1e-4) << "vocab " << vocab;
    EXPECT_LT(rel_err(download<float>(*ops, ent, size_t(n)), entr), 1e-4) << "vocab " << vocab;
    const auto dlg = download_bf16(*ops, dl, size_t(n * vocab));
    EXPECT_LT(rel_err(dlg, dlr), 1e-2) << "vocab " << vocab;
    for (int64_t j = 0; j < vocab; ++j) ASSERT_EQ(dlg[size_t(3 * vocab + j)], 0.f);
  }
}

struct Drawn {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};
Drawn draw(Ops& ops, const DevBuf& logits, int64_t vocab, const std::vector<SamplingRow>& rows) {
  Drawn d;
  d.tokens.assign(rows.size(), -7);
  d.logprobs.assign(rows.size(), NAN);
  ops.sample(d.tokens.data(), d.logprobs.data(), logits.get(), int64_t(rows.size()), vocab,
             rows.data());
  return d;
}

TEST_F(OpsGpu, GreedySamplingTakesArgmaxAndReportsItsLogprob) {
  SIESTA_TRACE_SEED();
  const int64_t vocab = 151936;
  // 1 row: a decode step (the most blocks per row); 33: parameters in the kernel's arguments;
  // 97: parameters uploaded. Twice each: every call must leave the per-row counters at zero.
  for (int64_t n : {1, 33, 97, 1, 97}) {
    const auto L = randn_bf16(size_t(n * vocab), rng, 2.f);
    auto logits = upload_bf16(*ops, L);
    const Drawn d = draw(*ops, *logits, vocab, std::vector<SamplingRow>(size_t(n)));
    for (int64_t i = 0; i < n; ++i) {
      const float* row = &L[size_t(i * vocab)];
      const int32_t want = int32_t(std::max_element(row, row + vocab) - row);  // first maximum
      EXPECT_EQ(d.tokens[size_t(i)], want) << "row " << i << " of " << n;
      EXPECT_NEAR(d.logprobs[size_t(i)], log_softmax(row, vocab)[size_t(want)], 1e-3)
          << "row " << i << " of " << n;
    }
  }
}

// The same logits in every row; row i seeded with seed i.
std::vector<float> repeated_rows(const std::vector<float>& x, int64_t n) {
  std::vector<float> r;
  for (int64_t i = 0; i < n; ++i) r.insert(r.end(), x.begin(), x.end());
  return r;
}

TEST_F(OpsGpu, TemperatureSamplingIsDeterministicPerRequestAndFollowsSoftmax) {
  SIESTA_TRACE_SEED();
  const std::vector<float> x = {0.f, 0.5f, 1.f, 2.f, -1.f, 1.5f, 0.25f, -0.5f, 3.f};
  const int64_t vocab = int64_t(x.size()), n = 8192;
  auto logits = upload_bf16(*ops, repeated_rows(x, n));
  for (float temp : {1.f, 0.5f}) {
    std::vector<SamplingRow> rows(static_cast<size_t>(n));
    const uint64_t base = rng();
    for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = {temp, 0, 1.f, base + uint64_t(i), 7};
    const Drawn a = draw(*ops, *logits, vocab, rows);
    // Same requests in reverse batch order: each request draws the same token.
    std::vector<SamplingRow> rev(rows.rbegin(), rows.rend());
    const Drawn b = draw(*ops, *logits, vocab, rev);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(a.tokens[size_t(i)], b.tokens[size_t(n - 1 - i)]) << "row " << i;
    // Empirical frequencies vs softmax(x / T): 8192 draws give a standard error <= 0.0055.
    std::vector<double> z(x.size());
    for (size_t j = 0; j < x.size(); ++j) z[j] = x[j] / temp;
    double mx = *std::max_element(z.begin(), z.end()), sum = 0;
    for (double& v : z) sum += v = std::exp(v - mx);
    std::vector<double> freq(x.size(), 0);
    const auto ls = log_softmax(x.data(), vocab);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t t = a.tokens[size_t(i)];
      ASSERT_GE(t, 0);
      ASSERT_LT(t, vocab);
      freq[size_t(t)] += 1.0 / double(n);
      // Log-prob under the unmodified distribution (temperature 1), whatever T was.
      ASSERT_NEAR(a.logprobs[size_t(i)], ls[size_t(t)], 1e-4);
    }
    for (size_t j = 0; j < x.size(); ++j)
      EXPECT_NEAR(freq[j], z[j] / sum, 0.025) << "token " << j << " temperature " << temp;
    // A different step draws differently for some rows.
    for (auto& r : rows) r.step = 8;
    const Drawn c = draw(*ops, *logits, vocab, rows);
    EXPECT_NE(c.tokens, a.tokens);
  }
}

TEST_F(OpsGpu, TopKAndTopPSampleOnlyFromTheKeptSet) {
  SIESTA_TRACE_SEED();
  // Probabilities (temperature 1) about 0.05, 0.10, 0.25, 0.60 for tokens 0..3.
  const std::vector<float> x = {std::log(0.05f), std::log(0.10f), std::log(0.25f),
                                std::log(0.60f)};
  const int64_t vocab = 4, n = 2000;
  auto logits = upload_bf16(*ops, repeated_rows(x, n));
  const uint64_t base = rng();
  auto run = [&](int32_t top_k, float top_p) {
    std::vector<SamplingRow> rows(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = {1.f, top_k, top_p, base + uint64_t(i), 0};
    const Drawn d = draw(*ops, *logits, vocab, rows);
    std::map<int32_t, int64_t> count;
    for (int32_t t : d.tokens) ++count[t];
    std::map<int32_t, double> f;   // from counts: n additions of 1/n do not sum to exactly 1
    for (auto [t, c] : count) f[t] = double(c) / double(n);
    // Reproducible for the same requests.
    EXPECT_EQ(draw(*ops, *logits, vocab, rows).tokens, d.tokens);
    return f;
  };
  auto k1 = run(1, 1.f);
  EXPECT_EQ(k1.size(), 1u);
  EXPECT_DOUBLE_EQ(k1[3], 1.0);
  auto k2 = run(2, 1.f);  // {3, 2}: 0.6 / 0.85 and 0.25 / 0.85
  EXPECT_EQ(k2.size(), 2u);
  EXPECT_NEAR(k2[3], 0.6 / 0.85, 0.04);
  EXPECT_NEAR(k2[2], 0.25 / 0.85, 0.04);
  auto p8 = run(0, 0.8f);  // smallest prefix reaching 0.8: {3, 2}
  EXPECT_EQ(p8.size(), 2u);
  EXPECT_NEAR(p8[3], 0.6 / 0.85, 0.04);
  auto p5 = run(0, 0.5f);  // the top token alone reaches 0.5
  EXPECT_EQ(p5.size(), 1u);
  EXPECT_DOUBLE_EQ(p5[3], 1.0);
}

}  // namespace
}  // namespace siesta::kernels::test
