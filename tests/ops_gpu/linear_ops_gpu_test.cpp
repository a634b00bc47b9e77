// CUDA backend vs double-precision host references: construction, copies, dtype conversion,
// gemm, bias and residual adds, embedding, optimizer ops.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu_buffers.hpp"
#include "siesta/kernels/error.hpp"

namespace siesta::kernels::test {
namespace {

TEST(OpsGpuSetup, RejectsDeviceIndexOutOfRange) {
  SIESTA_REQUIRE_GPU();
  EXPECT_THROW(make_cuda_ops(1 << 20), KernelError);
  auto ops = make_cuda_ops(0);
  EXPECT_EQ(ops->backend(), Backend::Cuda);
  EXPECT_EQ(ops->act_dtype(), DType::BF16);
  EXPECT_TRUE(ops->device().is_cuda());
}

TEST_F(OpsGpu, CopiesRoundTripAndFillZeroClears) {
  SIESTA_TRACE_SEED();
  const auto v = randn_f32(1000, rng);
  auto a = upload(*ops, v);
  DevBuf b(v.size() * 4);
  b.poison();
  ops->copy_on_device(b.get(), a->get(), v.size() * 4);
  EXPECT_EQ(download<float>(*ops, b, v.size()), v);
  ops->fill_zero(b.get(), v.size() * 4);
  for (float x : download<float>(*ops, b, v.size())) ASSERT_EQ(x, 0.f);
  // A queued upload lands behind the work before it (the fill) and is there after a sync.
  ops->copy_to_device_queued(b.get(), v.data(), v.size() * 4);
  ops->synchronize();
  EXPECT_EQ(download<float>(*ops, b, v.size()), v);
  // The same from and into the backend's own (pinned) host memory.
  auto pinned = ops->host_buffer(v.size() * 4);
  auto* hp = static_cast<float*>(pinned.get());
  std::copy(v.begin(), v.end(), hp);
  ops->fill_zero(b.get(), v.size() * 4);
  ops->copy_to_device_queued(b.get(), hp, v.size() * 4);
  ops->synchronize();
  std::fill(hp, hp + v.size(), -1.f);
  ops->copy_to_host(hp, b.get(), v.size() * 4);
  EXPECT_TRUE(std::equal(v.begin(), v.end(), hp));
  // Read by a kernel straight from the page-locked buffer, queued behind a fill.
  std::copy(v.begin(), v.end(), hp);
  ops->fill_zero(b.get(), v.size() * 4);
  ops->copy_host_buffer_to_device_queued(b.get(), hp, v.size() * 4);
  ops->synchronize();
  EXPECT_EQ(download<float>(*ops, b, v.size()), v);
  // Ordinary host memory is refused, unless the driver maps it too (HMM): then it is copied.
  ops->fill_zero(b.get(), v.size() * 4);
  try {
    ops->copy_host_buffer_to_device_queued(b.get(), v.data(), v.size() * 4);
    ops->synchronize();
    EXPECT_EQ(download<float>(*ops, b, v.size()), v);
  } catch (const KernelError& e) {
    EXPECT_NE(std::string(e.what()).find("not a host_buffer()"), std::string::npos) << e.what();
  }
}

TEST_F(OpsGpu, ConvertMatchesHostRoundingInEveryDirection) {
  SIESTA_TRACE_SEED();
  const size_t n = 4099;  // not a multiple of the launch size
  const auto v = randn_f32(n, rng, 3.f);
  auto f32 = upload(*ops, v);
  DevBuf b16(n * 2), h16(n * 2), back(n * 4);
  for (auto [buf, t] : {std::pair{&b16, DType::BF16}, std::pair{&h16, DType::F16}}) {
    buf->poison();
    back.poison();
    ops->convert(buf->get(), t, f32->get(), DType::F32, int64_t(n));
    ops->convert(back.get(), DType::F32, buf->get(), t, int64_t(n));
    std::vector<uint16_t> want(n);
    convert_host(v.data(), DType::F32, want.data(), t, n);
    EXPECT_EQ(download<uint16_t>(*ops, *buf, n), want) << dtype_name(t);  // bit-exact RNE
    std::vector<float> want_back(n);
    convert_host(want.data(), t, want_back.data(), DType::F32, n);
    EXPECT_EQ(download<float>(*ops, back, n), want_back) << dtype_name(t);
  }
  // bf16 -> f16 goes through fp32 on both sides.
  h16.poison();
  ops->convert(h16.get(), DType::F16, b16.get(), DType::BF16, int64_t(n));
  std::vector<uint16_t> src = download<uint16_t>(*ops, b16, n), want(n);
  convert_host(src.data(), DType::BF16, want.data(), DType::F16, n);
  EXPECT_EQ(download<uint16_t>(*ops, h16, n), want);
}

// Row-major reference: C = alpha op(A) op(B) + beta C.
std::vector<double> gemm_ref(const GemmArgs& g, const std::vector<float>& A,
                             const std::vector<float>& B, const std::vector<float>& C0) {
  std::vector<double> C(size_t(g.m * g.ldc));
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.ldc; ++j) {
      const size_t ci = size_t(i * g.ldc + j);
      if (j >= g.n) { C[ci] = C0[ci]; continue; }
      double s = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double a = g.trans_a ? A[size_t(p * g.lda + i)] : A[size_t(i * g.lda + p)];
        const double b = g.trans_b ? B[size_t(j * g.ldb + p)] : B[size_t(p * g.ldb + j)];
        s += a * b;
      }
      C[ci] = g.alpha * s + g.beta * C0[ci];
    }
  return C;
}

TEST_F(OpsGpu, GemmMatchesReferenceForTransposesOutputTypesAndBeta) {
  SIESTA_TRACE_SEED();
  struct Dims { int64_t m, n, k; };
  for (Dims d : {Dims{64, 96, 128}, Dims{37, 21, 53}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (DType ct : {DType::F32, DType::BF16})
          for (float beta : {0.f, 1.f}) {
            GemmArgs g;
            g.trans_a = ta; g.trans_b = tb;
            g.m = d.m; g.n = d.n; g.k = d.k;
            g.alpha = 0.5f; g.beta = beta;
            g.lda = (ta ? d.m : d.k) + 3;  // padded leading dimensions
            g.ldb = (tb ? d.k : d.n) + 5;
            g.ldc = d.n + 2;
            const auto A = randn_bf16(size_t((ta ? d.k : d.m) * g.lda), rng);
            const auto B = randn_bf16(size_t((tb ? d.n : d.k) * g.ldb), rng);
            const auto C0 = randn_bf16(size_t(d.m * g.ldc), rng);
            auto a = upload_bf16(*ops, A), b = upload_bf16(*ops, B);
            auto c = ct == DType::F32 ? upload(*ops, C0) : upload_bf16(*ops, C0);
            g.a = a->get(); g.b = b->get(); g.c = c->get(); g.c_dtype = ct;
            ops->gemm(g);
            const auto got = ct == DType::F32 ? download<float>(*ops, *c, C0.size())
                                              : download_bf16(*ops, *c, C0.size());
            const double err = rel_err(got, gemm_ref(g, A, B, C0));
            // bf16 operands are exact; fp32 accumulation ~1e-6; a bf16 C adds its rounding.
            const double tol = ct == DType::F32 ? 1e-4 : 1e-2;
            EXPECT_LT(err, tol) << "m" << d.m << " n" << d.n << " k" << d.k << " ta" << ta
                                << " tb" << tb << " c " << dtype_name(ct) << " beta " << beta;
          }
  }
}

TEST_F(OpsGpu, AddBiasAndAddInplaceMatchReference) {
  SIESTA_TRACE_SEED();
  for (int64_t d : {64, 37}) {  // vectorised and scalar paths
    const int64_t n = 19;
    const auto X = randn_bf16(size_t(n * d), rng), bias = randn_bf16(size_t(d), rng);
    const auto Y = randn_bf16(size_t(n * d), rng);
    auto x = upload_bf16(*ops, X), b = upload_bf16(*ops, bias), y = upload_bf16(*ops, Y);
    ops->add_bias(x->get(), b->get(), n, d);
    std::vector<double> ref(X.size());
    for (int64_t i = 0; i < n * d; ++i) ref[size_t(i)] = double(X[size_t(i)]) + bias[size_t(i % d)];
    EXPECT_LT(rel_err(download_bf16(*ops, *x, X.size()), ref), 1e-2) << "add_bias d=" << d;
    auto x2 = upload_bf16(*ops, X);
    ops->add_inplace(x2->get(), y->get(), n * d);
    for (size_t i = 0; i < X.size(); ++i) ref[i] = double(X[i]) + Y[i];
    EXPECT_LT(rel_err(download_bf16(*ops, *x2, X.size()), ref), 1e-2) << "add_inplace d=" << d;
  }
}

TEST_F(OpsGpu, BiasBackwardAccumulatesColumnSums) {
  SIESTA_TRACE_SEED();
  for (int64_t d : {96, 37}) {
    const int64_t n = 300;
    const auto DY = randn_bf16(size_t(n * d), rng);
    const auto DB0 = randn_f32(size_t(d), rng);
    auto dy = upload_bf16(*ops, DY);
    auto db = upload(*ops, DB0);
    ops->bias_backward(db->as<float>(), dy->get(), n, d);
    std::vector<double> ref(DB0.begin(), DB0.end());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) ref[size_t(j)] += DY[size_t(i * d + j)];
    EXPECT_LT(rel_err(download<float>(*ops, *db, size_t(d)), ref), 1e-5) << "d=" << d;
  }
}

TEST_F(OpsGpu, EmbeddingGathersRowsAndScatterAddsGradients) {
  SIESTA_TRACE_SEED();
  for (int64_t d : {64, 30}) {
    const int64_t vocab = 50, n = 40;
    const auto T = randn_bf16(size_t(vocab * d), rng);
    std::vector<int32_t> tok(static_cast<size_t>(n));
    for (auto& t : tok) t = int32_t(rng() % 7);  // few distinct ids: repeated rows must add
    auto table = upload_bf16(*ops, T);
    auto tokens = upload(*ops, tok);
    DevBuf out(size_t(n * d) * 2);
    out.poison();
    ops->embedding_forward(out.get(), table->get(), tokens->as<int32_t>(), n, d);
    const auto got = download_bf16(*ops, out, size_t(n * d));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j)
        ASSERT_EQ(got[size_t(i * d + j)], T[size_t(tok[size_t(i)] * d + j)]) << i << "," << j;

    const auto DO = randn_bf16(size_t(n * d), rng);
    const auto DT0 = randn_f32(size_t(vocab * d), rng);
    auto dout = upload_bf16(*ops, DO);
    auto dtable = upload(*ops, DT0);
    ops->embedding_backward(dtable->as<float>(), dout->get(), tokens->as<int32_t>(), n, d);
    std::vector<double> ref(DT0.begin(), DT0.end());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) ref[size_t(tok[size_t(i)] * d + j)] += DO[size_t(i * d + j)];
    EXPECT_LT(rel_err(download<float>(*ops, *dtable, DT0.size()), ref), 1e-6) << "d=" << d;
  }
}

TEST_F(OpsGpu, SumSquaresAddsScaleMultipliesAndAdamwMatchesReference) {
  SIESTA_TRACE_SEED();
  const int64_t n = 10007;
  const auto X = randn_f32(size_t(n), rng);
  auto x = upload(*ops, X);
  auto acc = upload(*ops, std::vector<float>{2.5f});
  ops->sum_squares(acc->as<float>(), x->as<float>(), n);
  double ss = 2.5;
  for (float v : X) ss += double(v) * v;
  EXPECT_NEAR(download<float>(*ops, *acc, 1)[0], ss, 1e-5 * ss);

  ops->scale(x->as<float>(), n, -0.75f);
  std::vector<double> sref(X.begin(), X.end());
  for (auto& v : sref) v *= -0.75;
  EXPECT_LT(rel_err(download<float>(*ops, *x, size_t(n)), sref), 1e-7);

  const auto P = randn_f32(size_t(n), rng), G1 = randn_f32(size_t(n), rng),
             G2 = randn_f32(size_t(n), rng);
  auto p = upload(*ops, P);
  auto m = upload(*ops, std::vector<float>(size_t(n), 0.f));
  auto v = upload(*ops, std::vector<float>(size_t(n), 0.f));
  Ops::AdamW h{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1};
  std::vector<double> pr(P.begin(), P.end()), mr(size_t(n), 0), vr(size_t(n), 0);
  for (int step = 1; step <= 2; ++step) {
    const auto& G = step == 1 ? G1 : G2;
    auto g = upload(*ops, G);
    h.step = step;
    ops->adamw_step(p->as<float>(), g->as<float>(), m->as<float>(), v->as<float>(), n, h);
    const double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.95, step);
    for (size_t i = 0; i < size_t(n); ++i) {
      mr[i] = 0.9 * mr[i] + 0.1 * G[i];
      vr[i] = 0.95 * vr[i] + 0.05 * double(G[i]) * G[i];
      pr[i] -= 1e-2 * (mr[i] / bc1 / (std::sqrt(vr[i] / bc2) + 1e-8) + 0.1 * pr[i]);
    }
  }
  EXPECT_LT(rel_err(download<float>(*ops, *p, size_t(n)), pr), 1e-6);
  EXPECT_LT(rel_err(download<float>(*ops, *m, size_t(n)), mr), 1e-6);
  EXPECT_LT(rel_err(download<float>(*ops, *v, size_t(n)), vr), 1e-6);
}

}  // namespace
}  // namespace siesta::kernels::test
