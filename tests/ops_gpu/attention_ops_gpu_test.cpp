// CUDA backend vs double-precision host references: causal grouped-query attention (forward,
// backward) and paged attention over a KV cache (kv_cache_write, decode and prefill).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "gpu_buffers.hpp"

namespace siesta::kernels::test {
namespace {

struct AttnRef {
  std::vector<double> out, lse, dq, dk, dv;
};

// q [B, S, H, hd], k/v [B, S, Hk, hd]; lse [B, H, S].
AttnRef attention_ref(const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<float>& dout, int B, int S,
                      const AttnShape& s) {
  const int H = s.n_heads, Hk = s.n_kv_heads, hd = s.head_dim, g = H / Hk;
  AttnRef r;
  r.out.assign(q.size(), 0);
  r.dq.assign(q.size(), 0);
  r.dk.assign(k.size(), 0);
  r.dv.assign(v.size(), 0);
  r.lse.assign(size_t(B) * H * S, 0);
  auto qi = [&](int b, int t, int h, int d) { return size_t(((b * S + t) * H + h) * hd + d); };
  auto ki = [&](int b, int t, int h, int d) { return size_t(((b * S + t) * Hk + h) * hd + d); };
  std::vector<double> p(static_cast<size_t>(S)), dp(static_cast<size_t>(S));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        const int hk = h / g;
        double mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += double(q[qi(b, i, h, d)]) * k[ki(b, j, hk, d)];
          p[size_t(j)] = dot * s.scale;
          mx = std::max(mx, p[size_t(j)]);
        }
        double sum = 0;
        for (int j = 0; j <= i; ++j) sum += std::exp(p[size_t(j)] - mx);
        r.lse[size_t((b * H + h) * S + i)] = mx + std::log(sum);
        for (int j = 0; j <= i; ++j) p[size_t(j)] = std::exp(p[size_t(j)] - mx) / sum;
        for (int d = 0; d < hd; ++d) {
          double o = 0;
          for (int j = 0; j <= i; ++j) o += p[size_t(j)] * v[ki(b, j, hk, d)];
          r.out[qi(b, i, h, d)] = o;
        }
        if (dout.empty()) continue;
        double D = 0;
        for (int j = 0; j <= i; ++j) {
          double t = 0;
          for (int d = 0; d < hd; ++d) t += double(dout[qi(b, i, h, d)]) * v[ki(b, j, hk, d)];
          dp[size_t(j)] = t;
          D += p[size_t(j)] * t;
        }
        for (int j = 0; j <= i; ++j) {
          const double ds = p[size_t(j)] * (dp[size_t(j)] - D) * s.scale;
          for (int d = 0; d < hd; ++d) {
            r.dq[qi(b, i, h, d)] += ds * k[ki(b, j, hk, d)];
            r.dk[ki(b, j, hk, d)] += ds * q[qi(b, i, h, d)];
            r.dv[ki(b, j, hk, d)] += p[size_t(j)] * dout[qi(b, i, h, d)];
          }
        }
      }
  return r;
}

struct AttnCase {
  int B, S, H, Hk, hd;
  const char* workspace_bytes;  // nullptr: default budget; small values force many chunks
};

class AttentionGpu : public OpsGpu, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(AttentionGpu, ForwardAndBackwardMatchReference) {
  SIESTA_TRACE_SEED();
  const AttnCase c = GetParam();
  if (c.workspace_bytes) setenv("SIESTA_ATTENTION_WORKSPACE_BYTES", c.workspace_bytes, 1);
  else unsetenv("SIESTA_ATTENTION_WORKSPACE_BYTES");
  AttnShape s{c.H, c.Hk, c.hd, float(1 / std::sqrt(double(c.hd)))};
  const size_t nq = size_t(c.B) * c.S * c.H * c.hd, nk = size_t(c.B) * c.S * c.Hk * c.hd;
  const auto Q = randn_bf16(nq, rng), K = randn_bf16(nk, rng), V = randn_bf16(nk, rng),
             DO = randn_bf16(nq, rng);
  auto q = upload_bf16(*ops, Q), k = upload_bf16(*ops, K), v = upload_bf16(*ops, V),
       dout = upload_bf16(*ops, DO);
  DevBuf out(nq * 2), lse(size_t(c.B) * c.H * c.S * 4), dq(nq * 2), dk(nk * 2), dv(nk * 2);
  for (DevBuf* b : {&out, &lse, &dq, &dk, &dv}) b->poison();
  ops->attention_forward(out.get(), lse.as<float>(), q->get(), k->get(), v->get(), c.B, c.S, s);
  ops->attention_backward(dq.get(), dk.get(), dv.get(), dout->get(), q->get(), k->get(),
                          v->get(), out.get(), lse.as<float>(), c.B, c.S, s);
  unsetenv("SIESTA_ATTENTION_WORKSPACE_BYTES");
  const AttnRef r = attention_ref(Q, K, V, DO, c.B, c.S, s);
  // P is rounded to bf16 before P V, dS to bf16 before dS K / dS^T Q (as flash attention
  // does): ~1e-2 relative on outputs, up to 2e-2 on gradients.
  EXPECT_LT(rel_err(download_bf16(*ops, out, nq), r.out), 1e-2);
  EXPECT_LT(rel_err(download<float>(*ops, lse, r.lse.size()), r.lse), 1e-4);
  EXPECT_LT(rel_err(download_bf16(*ops, dq, nq), r.dq), 2e-2);
  EXPECT_LT(rel_err(download_bf16(*ops, dk, nk), r.dk), 2e-2);
  EXPECT_LT(rel_err(download_bf16(*ops, dv, nk), r.dv), 2e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionGpu,
    ::testing::Values(AttnCase{2, 37, 4, 2, 64, nullptr},   // GQA, odd sequence length
                      AttnCase{1, 128, 2, 2, 128, nullptr}, // MHA, head_dim 128
                      AttnCase{3, 20, 6, 2, 32, "20000"},   // one KV group per chunk
                      AttnCase{2, 16, 7, 1, 16, nullptr}),  // all heads share one KV head
    [](const auto& info) {
      const AttnCase& c = info.param;
      return "B" + std::to_string(c.B) + "S" + std::to_string(c.S) + "H" + std::to_string(c.H) +
             "Hk" + std::to_string(c.Hk) + "hd" + std::to_string(c.hd) +
             (c.workspace_bytes ? "_chunked" : "");
    });

struct PagedCase {
  int H, Hk, hd, block_size;
  // Per sequence: context after the step and new tokens in it. The default mixes a decode, a
  // 3-token extension and a prompt; decode-only batches with few (token, head) pairs run in
  // parts (a block per part of a context, the last merging them).
  std::vector<int> ctx = {5, 33, 20}, qlen = {1, 3, 20};
};
class PagedAttentionGpu : public OpsGpu, public ::testing::WithParamInterface<PagedCase> {};

// A decode-only batch of n sequences with contexts of 1 .. 300 keys (fixed, varied).
PagedCase decode_batch(int H, int Hk, int hd, int n) {
  PagedCase c{H, Hk, hd, 16};
  c.ctx.clear(), c.qlen.assign(size_t(n), 1);
  for (int i = 0; i < n; ++i) c.ctx.push_back(1 + (i * 97 + 13) % 300);
  return c;
}

// Three sequences in one batch: a decode step, a 3-token extension and a whole prompt. The
// older tokens are written first, through kv_cache_write as well; unused cache slots stay
// poisoned, so reading a wrong slot turns the output into NaN.
TEST_P(PagedAttentionGpu, DecodeAndPrefillMatchFullAttentionOverCachedTokens) {
  SIESTA_TRACE_SEED();
  const PagedCase c = GetParam();
  const AttnShape s{c.H, c.Hk, c.hd, float(1 / std::sqrt(double(c.hd)))};
  const std::vector<int>& ctx = c.ctx;
  const std::vector<int>& qlen = c.qlen;
  const int nseq = int(ctx.size()), bs = c.block_size, row = c.Hk * c.hd;
  int num_blocks = 0;
  for (int x : ctx) num_blocks += (x + bs - 1) / bs;
  num_blocks += 8;  // spare, poisoned blocks
  int max_blocks = 0;
  for (int x : ctx) max_blocks = std::max(max_blocks, (x + bs - 1) / bs);
  // Blocks handed out in a shuffled order, as an allocator would after churn.
  std::vector<int32_t> free_blocks(static_cast<size_t>(num_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<int32_t> table(size_t(nseq * max_blocks), -1);
  size_t next = 0;
  for (int q = 0; q < nseq; ++q)
    for (int b = 0; b < (ctx[size_t(q)] + bs - 1) / bs; ++b)
      table[size_t(q * max_blocks + b)] = free_blocks[next++];
  auto slot_of = [&](int q, int pos) {
    return table[size_t(q * max_blocks + pos / bs)] * bs + pos % bs;
  };
  // Every sequence's K/V for all its positions, and queries for the new tokens.
  std::vector<std::vector<float>> Kall(nseq), Vall(nseq);
  for (int q = 0; q < nseq; ++q) {
    Kall[size_t(q)] = randn_bf16(size_t(ctx[size_t(q)] * row), rng);
    Vall[size_t(q)] = randn_bf16(size_t(ctx[size_t(q)] * row), rng);
  }
  const size_t cache_elems = size_t(num_blocks) * bs * row;
  DevBuf kc(cache_elems * 2), vc(cache_elems * 2);
  kc.poison();
  vc.poison();
  auto table_d = upload(*ops, table);

  // Writes tokens [from(q), to(q)) of every sequence through kv_cache_write.
  auto write = [&](auto from, auto to) {
    std::vector<float> k, v;
    std::vector<int32_t> slots;
    for (int q = 0; q < nseq; ++q)
      for (int p = from(q); p < to(q); ++p) {
        k.insert(k.end(), Kall[size_t(q)].begin() + p * row, Kall[size_t(q)].begin() + (p + 1) * row);
        v.insert(v.end(), Vall[size_t(q)].begin() + p * row, Vall[size_t(q)].begin() + (p + 1) * row);
        slots.push_back(slot_of(q, p));
      }
    if (slots.empty()) return;
    auto kd = upload_bf16(*ops, k), vd = upload_bf16(*ops, v);
    auto sd = upload(*ops, slots);
    PagedBatch b;
    b.num_tokens = int(slots.size());
    b.slot_mapping = sd->as<int32_t>();
    ops->kv_cache_write(PagedKv{kc.get(), vc.get(), num_blocks, bs}, kd->get(), vd->get(), b, s);
    ops->synchronize();
  };
  write([](int) { return 0; }, [&](int q) { return ctx[size_t(q)] - qlen[size_t(q)]; });
  write([&](int q) { return ctx[size_t(q)] - qlen[size_t(q)]; }, [&](int q) { return ctx[size_t(q)]; });

  // The cache holds every row at its slot.
  const auto kcache = download_bf16(*ops, kc, cache_elems), vcache = download_bf16(*ops, vc, cache_elems);
  for (int q = 0; q < nseq; ++q)
    for (int p = 0; p < ctx[size_t(q)]; ++p)
      for (int d = 0; d < row; ++d) {
        ASSERT_EQ(kcache[size_t(slot_of(q, p) * row + d)], Kall[size_t(q)][size_t(p * row + d)]);
        ASSERT_EQ(vcache[size_t(slot_of(q, p) * row + d)], Vall[size_t(q)][size_t(p * row + d)]);
      }

  std::vector<int32_t> q_start = {0}, positions;
  for (int q = 0; q < nseq; ++q) {
    q_start.push_back(q_start.back() + qlen[size_t(q)]);
    for (int p = ctx[size_t(q)] - qlen[size_t(q)]; p < ctx[size_t(q)]; ++p) positions.push_back(p);
  }
  const int ntok = q_start.back();
  const auto Q = randn_bf16(size_t(ntok) * c.H * c.hd, rng);
  auto qd = upload_bf16(*ops, Q);
  auto qs = upload(*ops, q_start), cl = upload(*ops, std::vector<int32_t>(ctx.begin(), ctx.end()));
  auto pos = upload(*ops, positions);
  PagedBatch b;
  b.num_seqs = nseq;
  b.num_tokens = ntok;
  b.q_start = qs->as<int32_t>();
  b.context_len = cl->as<int32_t>();
  b.block_table = table_d->as<int32_t>();
  b.max_blocks_per_seq = max_blocks;
  b.positions = pos->as<int32_t>();
  b.max_q_len = *std::max_element(qlen.begin(), qlen.end());
  b.max_context_len = *std::max_element(ctx.begin(), ctx.end());
  DevBuf out(Q.size() * 2);
  out.poison();
  ops->paged_attention(out.get(), qd->get(), PagedKv{kc.get(), vc.get(), num_blocks, bs}, b, s);

  std::vector<double> ref(Q.size());
  const int g = c.H / c.Hk;
  for (int q = 0; q < nseq; ++q)
    for (int t = q_start[size_t(q)]; t < q_start[size_t(q) + 1]; ++t) {
      const int p = positions[size_t(t)];
      for (int h = 0; h < c.H; ++h) {
        const int hk = h / g;
        std::vector<double> w(size_t(p + 1));
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= p; ++j) {
          double dot = 0;
          for (int d = 0; d < c.hd; ++d)
            dot += double(Q[size_t((t * c.H + h) * c.hd + d)]) *
                   Kall[size_t(q)][size_t(j * row + hk * c.hd + d)];
          w[size_t(j)] = dot * s.scale;
          mx = std::max(mx, w[size_t(j)]);
        }
        for (auto& x : w) sum += x = std::exp(x - mx);
        for (int d = 0; d < c.hd; ++d) {
          double o = 0;
          for (int j = 0; j <= p; ++j) o += w[size_t(j)] * Vall[size_t(q)][size_t(j * row + hk * c.hd + d)];
          ref[size_t((t * c.H + h) * c.hd + d)] = o / sum;
        }
      }
    }
  EXPECT_LT(rel_err(download_bf16(*ops, out, Q.size()), ref), 1e-2);  // bf16 output rounding
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionGpu,
                         ::testing::Values(PagedCase{14, 2, 64, 16},  // 0.5b head layout
                                           PagedCase{4, 4, 128, 8},
                                           PagedCase{6, 3, 40, 16},  // head_dim not 2^k
                                           // decode only, in parts: batch 1 over a long
                                           // context (8 parts of 125 keys), and 3 sequences
                                           // (8 parts each; 2 keys leave 6 of them empty)
                                           PagedCase{14, 2, 64, 16, {1000}, {1}},
                                           PagedCase{4, 1, 128, 16, {2, 300, 77}, {1, 1, 1}},
                                           // decode batches whose (token, KV head) pairs fill
                                           // the GPU: blocks of up to 4 query heads sharing a
                                           // KV head, for 7 (4 + 3), 4 and 3 heads per KV head
                                           decode_batch(14, 2, 64, 70), decode_batch(8, 2, 128, 70),
                                           decode_batch(6, 2, 64, 70),
                                           // and prefill chunks that do (with a decode)
                                           PagedCase{14, 2, 64, 16, {300, 200, 77, 9},
                                                     {100, 50, 77, 1}}),
                         [](const auto& info) {
                           const PagedCase& c = info.param;
                           return "H" + std::to_string(c.H) + "Hk" + std::to_string(c.Hk) + "hd" +
                                  std::to_string(c.hd) + "bs" + std::to_string(c.block_size) +
                                  "seqs" + std::to_string(c.ctx.size()) + "ctx" +
                                  std::to_string(c.ctx[0]);
                         });

}  // namespace
}  // namespace siesta::kernels::test
