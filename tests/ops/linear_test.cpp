// gemm (every transpose combination, alpha/beta), bias, residual, embedding, convert.
#include <gtest/gtest.h>

#include "ops_test_util.hpp"
#include "siesta/kernels/error.hpp"

namespace siesta::kernels {
namespace {
using test::random_vec;

TEST(CpuGemm, MatchesDoubleReferenceForEveryTransposeWithAlphaBeta) {
  auto ops = make_cpu_ops();
  const int64_t m = 7, n = 5, k = 9;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      auto a = random_vec(size_t(m * k), 1), b = random_vec(size_t(k * n), 2);
      auto c = random_vec(size_t(m * n), 3);
      auto A = [&](int64_t i, int64_t l) { return double(ta ? a[l * m + i] : a[i * k + l]); };
      auto B = [&](int64_t l, int64_t j) { return double(tb ? b[j * k + l] : b[l * n + j]); };
      std::vector<double> want(c.size());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t l = 0; l < k; ++l) s += A(i, l) * B(l, j);
          want[i * n + j] = 0.5 * s + 2.0 * c[i * n + j];
        }
      GemmArgs g;
      g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = 0.5f, g.beta = 2.f;
      g.a = a.data(), g.lda = ta ? m : k, g.b = b.data(), g.ldb = tb ? k : n;
      g.c = c.data(), g.ldc = n;
      ops->gemm(g);
      for (size_t i = 0; i < c.size(); ++i)
        EXPECT_NEAR(c[i], want[i], 1e-5) << "trans_a=" << ta << " trans_b=" << tb << " i=" << i;
    }
  }
}

TEST(CpuGemm, RejectsNonF32Output) {
  auto ops = make_cpu_ops();
  GemmArgs g;
  g.m = g.n = g.k = 1;
  g.c_dtype = DType::BF16;
  EXPECT_THROW(ops->gemm(g), KernelError);
}

TEST(CpuLinearHelpers, BiasForwardBackwardAndResidualAdd) {
  auto ops = make_cpu_ops();
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, bias = {10, 20, 30};
  ops->add_bias(x.data(), bias.data(), 2, 3);
  EXPECT_EQ(x, (std::vector<float>{11, 22, 33, 14, 25, 36}));
  std::vector<float> db = {1, 1, 1};
  ops->bias_backward(db.data(), x.data(), 2, 3);  // accumulates column sums
  EXPECT_EQ(db, (std::vector<float>{26, 48, 70}));
  std::vector<float> y = {1, 1, 1, 1, 1, 1};
  ops->add_inplace(x.data(), y.data(), 6);
  EXPECT_EQ(x[5], 37.f);
}

TEST(CpuEmbedding, ForwardGathersRowsAndBackwardScatterAddsRepeatedTokens) {
  auto ops = make_cpu_ops();
  const int64_t d = 3;
  std::vector<float> table = {0, 1, 2, 10, 11, 12, 20, 21, 22};
  std::vector<int32_t> tok = {2, 0, 2};
  std::vector<float> out(9);
  ops->embedding_forward(out.data(), table.data(), tok.data(), 3, d);
  EXPECT_EQ(out, (std::vector<float>{20, 21, 22, 0, 1, 2, 20, 21, 22}));
  std::vector<float> dt(9, 0.f), g = {1, 1, 1, 2, 2, 2, 3, 3, 3};
  ops->embedding_backward(dt.data(), g.data(), tok.data(), 3, d);
  EXPECT_EQ(dt, (std::vector<float>{2, 2, 2, 0, 0, 0, 4, 4, 4}));
}

TEST(CpuConvert, RoundTripsBf16AndF16AndRejectsIntegers) {
  auto ops = make_cpu_ops();
  std::vector<float> x = {1.f, -2.5f, 3.140625f, 0.f};
  std::vector<uint16_t> h(4);
  std::vector<float> back(4);
  ops->convert(h.data(), DType::BF16, x.data(), DType::F32, 4);
  ops->convert(back.data(), DType::F32, h.data(), DType::BF16, 4);
  EXPECT_EQ(back, x);  // all exactly representable in bf16
  ops->convert(h.data(), DType::F16, x.data(), DType::F32, 4);
  ops->convert(back.data(), DType::F32, h.data(), DType::F16, 4);
  EXPECT_EQ(back, x);
  EXPECT_THROW(ops->convert(h.data(), DType::I32, x.data(), DType::F32, 1), KernelError);
}

TEST(CpuFactories, MakeOpsPicksCpuAndCudaIsRefusedWithoutCuda) {
  auto ops = make_ops(Device::cpu());
  EXPECT_EQ(ops->backend(), Backend::Cpu);
  EXPECT_EQ(ops->act_dtype(), DType::F32);
#ifndef SIESTA_WITH_CUDA
  EXPECT_THROW(make_cuda_ops(0), KernelError);
#endif
}

}  // namespace
}  // namespace siesta::kernels
