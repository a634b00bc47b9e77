// Causal GQA attention (training) against a naive double reference and finite differences;
// paged attention against the contiguous one, with the sequence's blocks scattered in the cache.
#include <gtest/gtest.h>

#include <cmath>

#include "ops_test_util.hpp"

namespace siesta::kernels {
namespace {
using test::directional_fd;
using test::dot;
using test::random_vec;

// out[b, i, h, :] = sum_{j <= i} softmax_j(scale q.k) v  (double)
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, int B, int T,
                                    const AttnShape& s) {
  const int hd = s.head_dim, g = s.n_heads / s.n_kv_heads;
  const int qs = s.n_heads * hd, ks = s.n_kv_heads * hd;
  std::vector<double> out(size_t(B) * T * qs);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < s.n_heads; ++h)
      for (int i = 0; i < T; ++i) {
        std::vector<double> sc(i + 1);
        double mx = -1e300;
        for (int j = 0; j <= i; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += double(q[(b * T + i) * qs + h * hd + e]) * k[(b * T + j) * ks + (h / g) * hd + e];
          sc[j] = d * s.scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (auto& x : sc) sum += (x = std::exp(x - mx));
        for (int e = 0; e < hd; ++e) {
          double o = 0;
          for (int j = 0; j <= i; ++j) o += sc[j] / sum * v[(b * T + j) * ks + (h / g) * hd + e];
          out[(b * T + i) * qs + h * hd + e] = o;
        }
      }
  return out;
}

const AttnShape kShape{4, 2, 8, 1.f / std::sqrt(8.f)};

TEST(CpuAttention, ForwardMatchesNaiveCausalGroupedQueryAttention) {
  auto ops = make_cpu_ops();
  const int B = 2, T = 6;
  auto q = random_vec(B * T * 32, 1), k = random_vec(B * T * 16, 2), v = random_vec(B * T * 16, 3);
  std::vector<float> out(q.size()), lse(B * 4 * T);
  ops->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, kShape);
  auto want = naive_attention(q, k, v, B, T, kShape);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << i;
  // First position attends only to itself: lse = scale q0.k0.
  double d = 0;
  for (int e = 0; e < 8; ++e) d += double(q[e]) * k[e];
  EXPECT_NEAR(lse[0], d * kShape.scale, 1e-5);
}

TEST(CpuAttention, BackwardMatchesFiniteDifferencesForQueryKeyValue) {
  auto ops = make_cpu_ops();
  const int B = 2, T = 5;
  auto q = random_vec(B * T * 32, 4), k = random_vec(B * T * 16, 5), v = random_vec(B * T * 16, 6);
  auto c = random_vec(q.size(), 7);
  auto loss = [&] {
    std::vector<float> o(q.size()), l(B * 4 * T);
    ops->attention_forward(o.data(), l.data(), q.data(), k.data(), v.data(), B, T, kShape);
    return dot(o, c);
  };
  std::vector<float> out(q.size()), lse(B * 4 * T);
  ops->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, kShape);
  std::vector<float> dq(q.size(), 9.f), dk(k.size(), 9.f), dv(v.size(), 9.f);  // overwritten
  ops->attention_backward(dq.data(), dk.data(), dv.data(), c.data(), q.data(), k.data(), v.data(),
                          out.data(), lse.data(), B, T, kShape);
  // fp32 forward, eps 1e-2: central differences agree to ~1e-3 relative.
  for (auto [x, g, seed] : {std::tuple{&q, &dq, 8}, {&k, &dk, 9}, {&v, &dv, 10}}) {
    auto dir = random_vec(x->size(), uint64_t(seed));
    double fd = directional_fd(*x, dir, 1e-2f, loss);
    EXPECT_NEAR(dot(*g, dir), fd, 2e-3 * std::abs(fd) + 1e-4) << "input seed " << seed;
  }
}

TEST(CpuPagedAttention, PrefillAndDecodeOverScatteredBlocksMatchContiguousAttention) {
  auto ops = make_cpu_ops();
  const int T = 7, bs = 3, nblocks = 8;
  const int ks = 16, qs = 32;
  auto q = random_vec(T * qs, 11), k = random_vec(T * ks, 12), v = random_vec(T * ks, 13);
  std::vector<float> want(q.size());
  ops->attention_forward(want.data(), nullptr, q.data(), k.data(), v.data(), 1, T, kShape);

  std::vector<float> kc(nblocks * bs * ks, 0.f), vc(kc.size(), 0.f);
  PagedKv cache{kc.data(), vc.data(), nblocks, bs};
  std::vector<int32_t> table = {5, 1, 6};  // out of order on purpose
  auto slot = [&](int p) { return table[p / bs] * bs + p % bs; };
  // Prefill the first 4 tokens in one batch, then decode the remaining 3 one at a time.
  std::vector<float> out(q.size());
  auto run = [&](int first, int count) {
    std::vector<int32_t> qstart = {0, count}, ctx = {first + count}, slots, pos;
    for (int p = first; p < first + count; ++p) slots.push_back(slot(p)), pos.push_back(p);
    PagedBatch b;
    b.num_seqs = 1, b.num_tokens = count, b.q_start = qstart.data(), b.context_len = ctx.data();
    b.block_table = table.data(), b.max_blocks_per_seq = 3, b.slot_mapping = slots.data();
    b.positions = pos.data(), b.max_q_len = count, b.max_context_len = first + count;
    ops->kv_cache_write(cache, k.data() + first * ks, v.data() + first * ks, b, kShape);
    ops->paged_attention(out.data() + first * qs, q.data() + first * qs, cache, b, kShape);
  };
  run(0, 4);
  for (int p = 4; p < T; ++p) run(p, 1);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << i;
}

TEST(CpuPagedAttention, KvCacheWriteSkipsPaddingSlotsAndRejectsOutOfRange) {
  auto ops = make_cpu_ops();
  std::vector<float> kc(2 * 2 * 16, 0.f), vc(kc.size(), 0.f), k(2 * 16, 1.f), v(2 * 16, 2.f);
  PagedKv cache{kc.data(), vc.data(), 2, 2};
  std::vector<int32_t> slots = {-1, 3};
  PagedBatch b;
  b.num_tokens = 2, b.slot_mapping = slots.data();
  ops->kv_cache_write(cache, k.data(), v.data(), b, kShape);
  EXPECT_EQ(kc[0], 0.f);
  EXPECT_EQ(kc[3 * 16], 1.f);
  EXPECT_EQ(vc[3 * 16 + 15], 2.f);
  slots[1] = 4;
  EXPECT_THROW(ops->kv_cache_write(cache, k.data(), v.data(), b, kShape), KernelError);
}

}  // namespace
}  // namespace siesta::kernels
