// The CPU backend's fused decode ops against the host reference (fused_decode_ref.hpp): q out,
// K/V stored at their slots only (slot -1 stores nothing), SwiGLU of the normed projections,
// and the token limit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "fused_decode_ref.hpp"
#include "ops_test_util.hpp"

namespace siesta::kernels::test {
namespace {

double max_abs_diff(const std::vector<float>& got, const std::vector<double>& ref) {
  double m = got.size() == ref.size() ? 0 : INFINITY;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i)
    m = std::max(m, std::abs(double(got[i]) - ref[i]));
  return std::isnan(m) ? INFINITY : m;
}

QkvCase make_case(int n, bool bias, uint64_t seed) {
  QkvCase c;
  c.n = n, c.d = 48, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.bias = bias;
  c.x = random_vec(size_t(n * c.d), seed);
  c.norm_w = random_vec(size_t(c.d), seed + 1, 0.5f, 1.5f);
  c.wq = random_vec(size_t(c.qd() * c.d), seed + 2);
  c.wk = random_vec(size_t(c.kvd() * c.d), seed + 3);
  c.wv = random_vec(size_t(c.kvd() * c.d), seed + 4);
  c.bq = random_vec(size_t(c.qd()), seed + 5);
  c.bk = random_vec(size_t(c.kvd()), seed + 6);
  c.bv = random_vec(size_t(c.kvd()), seed + 7);
  for (int t = 0; t < n; ++t) c.positions.push_back(3 + 5 * t);
  c.cos_sin = rope_cos_sin_table(64, c.head_dim, 10000.0);
  return c;
}

TEST(FusedDecodeCpu, NormQkvRopeCacheMatchesReferenceAndStoresOnlyRealSlots) {
  auto ops = make_cpu_ops();
  const Rounding exact = [](double v) { return double(float(v)); };
  for (bool bias : {false, true}) {
    const int n = 5;
    QkvCase c = make_case(n, bias, bias ? 11 : 22);
    const int block_size = 4, num_blocks = 6;
    const float sentinel = 1234.5f;
    std::vector<float> kc(size_t(num_blocks * block_size * c.kvd()), sentinel), vc = kc;
    PagedKv cache{kc.data(), vc.data(), num_blocks, block_size};
    const std::vector<int32_t> slots = {7, 2, -1, 20, 13};  // token 2 is padding
    PagedBatch b;
    b.num_seqs = n, b.num_tokens = n;
    b.slot_mapping = slots.data();
    b.positions = c.positions.data();
    const AttnShape s{c.n_heads, c.n_kv_heads, c.head_dim, 1.f};
    std::vector<float> q(size_t(n * c.qd()), std::numeric_limits<float>::quiet_NaN());
    Ops::QkvWeights w{c.wq.data(), c.wk.data(), c.wv.data(),
                      bias ? c.bq.data() : nullptr, bias ? c.bk.data() : nullptr,
                      bias ? c.bv.data() : nullptr};
    ASSERT_GE(ops->fused_decode_max_tokens(c.d), n);
    ops->norm_qkv_rope_cache(q.data(), c.x.data(), c.norm_w.data(), c.eps, c.d, w,
                             c.cos_sin.data(), cache, b, s);
    const QkvRef r = ref_norm_qkv_rope(c, exact);
    EXPECT_LT(max_abs_diff(q, r.q), 1e-4) << "bias " << bias;
    for (int slot = 0; slot < num_blocks * block_size; ++slot) {
      int t = -1;
      for (int i = 0; i < n; ++i)
        if (slots[size_t(i)] == slot) t = i;
      for (int j = 0; j < c.kvd(); ++j) {
        const size_t at = size_t(slot * c.kvd() + j);
        if (t < 0) {
          ASSERT_EQ(kc[at], sentinel) << "slot " << slot << " was written";
          ASSERT_EQ(vc[at], sentinel) << "slot " << slot << " was written";
        } else {
          ASSERT_NEAR(kc[at], r.k[size_t(t * c.kvd() + j)], 1e-4) << "token " << t << " k " << j;
          ASSERT_NEAR(vc[at], r.v[size_t(t * c.kvd() + j)], 1e-4) << "token " << t << " v " << j;
        }
      }
    }
  }
}

TEST(FusedDecodeCpu, NormGateUpMatchesReference) {
  auto ops = make_cpu_ops();
  const Rounding exact = [](double v) { return double(float(v)); };
  const int n = 3, d = 40, inter = 56;
  const auto x = random_vec(size_t(n * d), 5), nw = random_vec(size_t(d), 6, 0.5f, 1.5f);
  const auto wg = random_vec(size_t(inter * d), 7), wu = random_vec(size_t(inter * d), 8);
  std::vector<float> h(size_t(n * inter), std::numeric_limits<float>::quiet_NaN());
  ops->norm_gate_up(h.data(), x.data(), nw.data(), 1e-5f, wg.data(), wu.data(), n, d, inter);
  EXPECT_LT(max_abs_diff(h, ref_norm_gate_up(x, nw, 1e-5f, wg, wu, n, d, inter, exact)), 1e-4);
}

TEST(FusedDecodeCpu, RejectsMoreTokensThanOffered) {
  auto ops = make_cpu_ops();
  const int d = 16, too_many = ops->fused_decode_max_tokens(d) + 1;
  std::vector<float> x(size_t(too_many * d), 1.f), nw(size_t(d), 1.f), w(size_t(d * d), 1.f),
      h(size_t(too_many * d));
  try {
    ops->norm_gate_up(h.data(), x.data(), nw.data(), 1e-5f, w.data(), w.data(), too_many, d, d);
    FAIL() << "no error for " << too_many << " tokens";
  } catch (const KernelError& e) {
    EXPECT_NE(std::string(e.what()).find("fused_decode_max_tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace siesta::kernels::test
