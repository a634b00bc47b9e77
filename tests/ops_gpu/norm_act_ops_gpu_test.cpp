// CUDA backend vs double-precision host references: RMSNorm, rotary embeddings, SwiGLU.
#include <cmath>

#include "gpu_buffers.hpp"

namespace siesta::kernels::test {
namespace {

TEST_F(OpsGpu, RmsnormForwardMatchesReference) {
  SIESTA_TRACE_SEED();
  for (int64_t d : {896, 100}) {  // vectorised and scalar paths
    const int64_t n = 37;
    const float eps = 1e-6f;
    const auto X = randn_bf16(size_t(n * d), rng, 2.f), W = randn_bf16(size_t(d), rng, 0.5f, 1.f);
    auto x = upload_bf16(*ops, X), w = upload_bf16(*ops, W);
    DevBuf out(size_t(n * d) * 2), rstd(size_t(n) * 4);
    out.poison();
    rstd.poison();
    ops->rmsnorm_forward(out.get(), rstd.as<float>(), x->get(), w->get(), n, d, eps);
    std::vector<double> ref(X.size()), rref(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += double(X[size_t(i * d + j)]) * X[size_t(i * d + j)];
      rref[size_t(i)] = 1 / std::sqrt(ss / double(d) + eps);
      for (int64_t j = 0; j < d; ++j)
        ref[size_t(i * d + j)] = X[size_t(i * d + j)] * rref[size_t(i)] * W[size_t(j)];
    }
    EXPECT_LT(rel_err(download_bf16(*ops, out, X.size()), ref), 1e-2) << "d=" << d;  // bf16 out
    EXPECT_LT(rel_err(download<float>(*ops, rstd, size_t(n)), rref), 1e-5) << "d=" << d;
  }
}

TEST_F(OpsGpu, RmsnormBackwardAccumulatesIntoDxAndDw) {
  SIESTA_TRACE_SEED();
  for (int64_t d : {896, 100}) {
    const int64_t n = 300;
    const auto X = randn_bf16(size_t(n * d), rng, 2.f), W = randn_bf16(size_t(d), rng, 0.5f, 1.f);
    const auto G = randn_bf16(size_t(n * d), rng), DX0 = randn_bf16(size_t(n * d), rng, 0.25f);
    const auto DW0 = randn_f32(size_t(d), rng);
    std::vector<float> R(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += double(X[size_t(i * d + j)]) * X[size_t(i * d + j)];
      R[size_t(i)] = float(1 / std::sqrt(ss / double(d) + 1e-6));
    }
    auto x = upload_bf16(*ops, X), w = upload_bf16(*ops, W), g = upload_bf16(*ops, G);
    auto dx = upload_bf16(*ops, DX0);
    auto dw = upload(*ops, DW0);
    auto r = upload(*ops, R);
    ops->rmsnorm_backward(dx->get(), dw->as<float>(), g->get(), x->get(), w->get(),
                          r->as<float>(), n, d);
    std::vector<double> dxr(DX0.begin(), DX0.end()), dwr(DW0.begin(), DW0.end());
    for (int64_t i = 0; i < n; ++i) {
      const double ri = R[size_t(i)];
      double dot = 0;
      for (int64_t j = 0; j < d; ++j)
        dot += double(G[size_t(i * d + j)]) * W[size_t(j)] * X[size_t(i * d + j)];
      for (int64_t j = 0; j < d; ++j) {
        const size_t k = size_t(i * d + j);
        dxr[k] += ri * W[size_t(j)] * G[k] - X[k] * ri * ri * ri * dot / double(d);
        dwr[size_t(j)] += double(G[k]) * X[k] * ri;
      }
    }
    EXPECT_LT(rel_err(download_bf16(*ops, *dx, X.size()), dxr), 1e-2) << "d=" << d;
    EXPECT_LT(rel_err(download<float>(*ops, *dw, size_t(d)), dwr), 1e-4) << "d=" << d;
  }
}

// HF half-split rotation, the table built here as rope_cos_sin_table documents it.
std::vector<float> cos_sin_table(int max_pos, int hd, double theta) {
  std::vector<float> t(size_t(max_pos) * hd);
  for (int p = 0; p < max_pos; ++p)
    for (int j = 0; j < hd / 2; ++j) {
      const double a = p * std::pow(theta, -2.0 * j / hd);
      t[size_t(p * hd + j)] = float(std::cos(a));
      t[size_t(p * hd + hd / 2 + j)] = float(std::sin(a));
    }
  return t;
}

TEST_F(OpsGpu, RopeRotatesLikeReferenceAndInverseRestores) {
  SIESTA_TRACE_SEED();
  const int n_tok = 23, heads = 3, hd = 64, max_pos = 512;
  const auto X = randn_bf16(size_t(n_tok * heads * hd), rng);
  std::vector<int32_t> pos(static_cast<size_t>(n_tok));
  for (auto& p : pos) p = int32_t(rng() % max_pos);
  const auto CS = cos_sin_table(max_pos, hd, 10000.0);
  auto x = upload_bf16(*ops, X);
  auto ps = upload(*ops, pos);
  auto cs = upload(*ops, CS);
  ops->rope(x->get(), ps->as<int32_t>(), n_tok, heads, hd, cs->as<float>(), false);
  std::vector<double> ref(X.size());
  for (int t = 0; t < n_tok; ++t)
    for (int h = 0; h < heads; ++h)
      for (int j = 0; j < hd / 2; ++j) {
        const size_t base = size_t((t * heads + h) * hd);
        const double c = CS[size_t(pos[size_t(t)] * hd + j)],
                     s = CS[size_t(pos[size_t(t)] * hd + hd / 2 + j)];
        const double x1 = X[base + j], x2 = X[base + j + hd / 2];
        ref[base + j] = x1 * c - x2 * s;
        ref[base + j + hd / 2] = x2 * c + x1 * s;
      }
  EXPECT_LT(rel_err(download_bf16(*ops, *x, X.size()), ref), 1e-2);
  ops->rope(x->get(), ps->as<int32_t>(), n_tok, heads, hd, cs->as<float>(), true);
  EXPECT_LT(rel_err(download_bf16(*ops, *x, X.size()), X), 1e-2);  // two bf16 roundings
}

TEST_F(OpsGpu, SwigluForwardAndBackwardMatchReference) {
  SIESTA_TRACE_SEED();
  const int64_t n = 8 * 500 + 5;  // vector body plus a scalar tail
  const auto Gt = randn_bf16(size_t(n), rng, 2.f), U = randn_bf16(size_t(n), rng),
             DH = randn_bf16(size_t(n), rng);
  auto g = upload_bf16(*ops, Gt), u = upload_bf16(*ops, U), dh = upload_bf16(*ops, DH);
  DevBuf h(size_t(n) * 2), dg(size_t(n) * 2), du(size_t(n) * 2);
  h.poison();
  dg.poison();
  du.poison();
  ops->swiglu_forward(h.get(), g->get(), u->get(), n);
  ops->swiglu_backward(dg.get(), du.get(), dh->get(), g->get(), u->get(), n);
  std::vector<double> hr(static_cast<size_t>(n)), dgr(static_cast<size_t>(n)), dur(static_cast<size_t>(n));
  for (size_t i = 0; i < size_t(n); ++i) {
    const double x = Gt[i], s = 1 / (1 + std::exp(-x));
    hr[i] = x * s * U[i];
    dur[i] = DH[i] * x * s;
    dgr[i] = DH[i] * U[i] * s * (1 + x * (1 - s));
  }
  EXPECT_LT(rel_err(download_bf16(*ops, h, size_t(n)), hr), 1e-2);
  EXPECT_LT(rel_err(download_bf16(*ops, dg, size_t(n)), dgr), 1e-2);
  EXPECT_LT(rel_err(download_bf16(*ops, du, size_t(n)), dur), 1e-2);
}

}  // namespace
}  // namespace siesta::kernels::test
