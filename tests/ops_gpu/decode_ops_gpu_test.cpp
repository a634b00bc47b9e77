// The CUDA decode kernels against host references: Ops::gemm for a few rows (the GEMV path,
// odd and even widths, beta 0 and 1, falling back to cuBLAS where the GEMV cannot take the
// shape), and the fused decode ops against fused_decode_ref.hpp with bf16 rounding at the
// points where the op-by-op sequence stores activations.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../ops/fused_decode_ref.hpp"
#include "gpu_buffers.hpp"
#include "siesta/kernels/error.hpp"

namespace siesta::kernels::test {
namespace {

const Rounding bf16_round = [](double v) { return double(bf16_to_f32(f32_to_bf16(float(v)))); };

TEST_F(OpsGpu, GemmWithFewRowsMatchesReference) {
  SIESTA_TRACE_SEED();
  struct Dims { int64_t m, n, k; };
  // k 896 / 4864: the 0.5b decode shapes (3 tokens run the 4-token kernel); 1999 and 1024
  // rows give every block several units, so items of 8 units whose rows go in one copy (1999:
  // the odd last row); k 16384 and 12288 stream each row in several segments (the 7b
  // down_proj's case); 8 tokens (more than the GEMV takes) and 5 x 4864 (more than its shared
  // memory) go to cuBLAS and must agree too.
  for (Dims dm : {Dims{1, 37, 64}, Dims{3, 200, 896}, Dims{1, 1999, 896}, Dims{2, 1024, 896},
                  Dims{8, 130, 896}, Dims{4, 64, 4864}, Dims{5, 64, 4864}, Dims{1, 40, 16384},
                  Dims{2, 24, 12288}, Dims{8, 33, 8192}})
    for (float beta : {0.f, 1.f}) {
      GemmArgs g;
      g.trans_b = true;
      g.m = dm.m, g.n = dm.n, g.k = dm.k;
      g.beta = beta;
      g.lda = dm.k + 8;  // padded rows of A, still 16-byte aligned
      g.ldb = dm.k;
      g.ldc = dm.n + 3;
      const auto A = randn_bf16(size_t(dm.m * g.lda), rng);
      const auto B = randn_bf16(size_t(dm.n * g.ldb), rng, 0.05f);
      const auto C0 = randn_bf16(size_t(dm.m * g.ldc), rng);
      auto a = upload_bf16(*ops, A), b = upload_bf16(*ops, B), c = upload_bf16(*ops, C0);
      g.a = a->get(), g.b = b->get(), g.c = c->get();
      g.c_dtype = DType::BF16;
      ops->gemm(g);
      std::vector<double> ref(C0.begin(), C0.end());
      for (int64_t i = 0; i < dm.m; ++i)
        for (int64_t j = 0; j < dm.n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < dm.k; ++p) s += double(A[size_t(i * g.lda + p)]) * B[size_t(j * g.ldb + p)];
          ref[size_t(i * g.ldc + j)] = s + beta * C0[size_t(i * g.ldc + j)];
        }
      // Columns past n (ldc padding) must be untouched: they are part of ref as C0.
      EXPECT_LT(rel_err(download_bf16(*ops, *c, C0.size()), ref), 1e-2)
          << "m" << dm.m << " n" << dm.n << " k" << dm.k << " beta " << beta;
    }
}

QkvCase make_case(std::mt19937_64& rng, int n, bool bias) {
  QkvCase c;  // the 0.5b attention shapes: 14 heads, 2 KV heads, head_dim 64
  c.n = n, c.d = 896, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64, c.bias = bias;
  c.eps = 1e-6f;
  c.x = randn_bf16(size_t(n * c.d), rng);
  c.norm_w = randn_bf16(size_t(c.d), rng, 0.2f, 1.f);
  c.wq = randn_bf16(size_t(c.qd() * c.d), rng, 0.03f);
  c.wk = randn_bf16(size_t(c.kvd() * c.d), rng, 0.03f);
  c.wv = randn_bf16(size_t(c.kvd() * c.d), rng, 0.03f);
  c.bq = randn_bf16(size_t(c.qd()), rng, 0.5f);
  c.bk = randn_bf16(size_t(c.kvd()), rng, 0.5f);
  c.bv = randn_bf16(size_t(c.kvd()), rng, 0.5f);
  for (int t = 0; t < n; ++t) c.positions.push_back(int32_t(rng() % 500));
  c.cos_sin = rope_cos_sin_table(512, c.head_dim, 1e6);
  return c;
}

std::vector<float> gather(const std::vector<float>& v, size_t at, size_t n) {
  return std::vector<float>(v.begin() + long(at), v.begin() + long(at + n));
}
std::vector<double> gather(const std::vector<double>& v, size_t at, size_t n) {
  return std::vector<double>(v.begin() + long(at), v.begin() + long(at + n));
}

TEST_F(OpsGpu, NormQkvRopeCacheMatchesReferenceAndStoresOnlyRealSlots) {
  SIESTA_TRACE_SEED();
  for (int n : {1, 3, 8})
    for (bool bias : {false, true}) {
      QkvCase c = make_case(rng, n, bias);
      ASSERT_GE(ops->fused_decode_max_tokens(c.d), n);
      const int block_size = 16, num_blocks = 4, slots_total = block_size * num_blocks;
      std::vector<int32_t> slots;
      for (int t = 0; t < n; ++t) slots.push_back(t == 1 ? -1 : (7 + 13 * t) % slots_total);
      auto x = upload_bf16(*ops, c.x), nw = upload_bf16(*ops, c.norm_w);
      auto wq = upload_bf16(*ops, c.wq), wk = upload_bf16(*ops, c.wk), wv = upload_bf16(*ops, c.wv);
      auto bq = upload_bf16(*ops, c.bq), bk = upload_bf16(*ops, c.bk), bv = upload_bf16(*ops, c.bv);
      auto cs = upload(*ops, c.cos_sin), pos = upload(*ops, c.positions), sl = upload(*ops, slots);
      DevBuf q(size_t(n * c.qd()) * 2), kc(size_t(slots_total * c.kvd()) * 2), vc(kc.bytes());
      q.poison(), kc.poison(), vc.poison();
      PagedKv cache{kc.get(), vc.get(), num_blocks, block_size};
      PagedBatch b;
      b.num_seqs = n, b.num_tokens = n, b.max_q_len = 1;
      b.slot_mapping = sl->as<int32_t>();
      b.positions = pos->as<int32_t>();
      Ops::QkvWeights w{wq->get(), wk->get(), wv->get(), bias ? bq->get() : nullptr,
                        bias ? bk->get() : nullptr, bias ? bv->get() : nullptr};
      const AttnShape s{c.n_heads, c.n_kv_heads, c.head_dim, 0.125f};
      ops->norm_qkv_rope_cache(q.get(), x->get(), nw->get(), c.eps, c.d, w, cs->as<float>(),
                               cache, b, s);
      const QkvRef r = ref_norm_qkv_rope(c, bf16_round);
      SCOPED_TRACE("n " + std::to_string(n) + " bias " + std::to_string(bias));
      EXPECT_LT(rel_err(download_bf16(*ops, q, size_t(n * c.qd())), r.q), 1e-2);
      const auto K = download_bf16(*ops, kc, size_t(slots_total * c.kvd()));
      const auto V = download_bf16(*ops, vc, size_t(slots_total * c.kvd()));
      const size_t kvd = size_t(c.kvd());
      for (int t = 0; t < n; ++t) {
        if (slots[size_t(t)] < 0) continue;
        const size_t at = size_t(slots[size_t(t)]) * kvd;
        EXPECT_LT(rel_err(gather(K, at, kvd), gather(r.k, size_t(t) * kvd, kvd)), 1e-2) << t;
        EXPECT_LT(rel_err(gather(V, at, kvd), gather(r.v, size_t(t) * kvd, kvd)), 1e-2) << t;
      }
      // Every other slot is still poisoned: nothing was stored for the padding token.
      for (int slot = 0; slot < slots_total; ++slot) {
        if (std::find(slots.begin(), slots.end(), slot) != slots.end()) continue;
        for (size_t j = 0; j < kvd; ++j) {
          ASSERT_TRUE(std::isnan(K[size_t(slot) * kvd + j])) << "slot " << slot;
          ASSERT_TRUE(std::isnan(V[size_t(slot) * kvd + j])) << "slot " << slot;
        }
      }
    }
}

TEST_F(OpsGpu, NormGateUpMatchesReference) {
  SIESTA_TRACE_SEED();
  for (int n : {1, 4, 8}) {
    const int d = 896, inter = 4864;
    const auto X = randn_bf16(size_t(n * d), rng), NW = randn_bf16(size_t(d), rng, 0.2f, 1.f);
    const auto WG = randn_bf16(size_t(inter * d), rng, 0.03f);
    const auto WU = randn_bf16(size_t(inter * d), rng, 0.03f);
    auto x = upload_bf16(*ops, X), nw = upload_bf16(*ops, NW);
    auto wg = upload_bf16(*ops, WG), wu = upload_bf16(*ops, WU);
    DevBuf h(size_t(n * inter) * 2);
    h.poison();
    ops->norm_gate_up(h.get(), x->get(), nw->get(), 1e-6f, wg->get(), wu->get(), n, d, inter);
    EXPECT_LT(rel_err(download_bf16(*ops, h, size_t(n * inter)),
                      ref_norm_gate_up(X, NW, 1e-6f, WG, WU, n, d, inter, bf16_round)),
              1e-2)
        << "n " << n;
  }
}

// One row split over many blocks (the decode case): the argmax and its log-prob must not
// depend on where the split boundaries fall; a tie across two slices takes the lower index.
TEST_F(OpsGpu, GreedySamplingOfOneLongRowAcrossSlices) {
  SIESTA_TRACE_SEED();
  for (int64_t vocab : {151936, 151937}) {  // vectorised and scalar slices
    auto L = randn_bf16(size_t(vocab), rng, 2.f);
    const int64_t lo = 1000 + int64_t(rng() % 1000), hi = vocab - 1 - int64_t(rng() % 1000);
    L[size_t(lo)] = L[size_t(hi)] = 20.f;  // far apart: different slices
    auto logits = upload_bf16(*ops, L);
    int32_t token = -1;
    float logprob = 0;
    const SamplingRow greedy{};
    ops->sample(&token, &logprob, logits->get(), 1, vocab, &greedy);
    EXPECT_EQ(token, lo) << "vocab " << vocab;
    double mx = 20, sum = 0;
    for (float v : L) sum += std::exp(double(v) - mx);
    EXPECT_NEAR(logprob, -std::log(sum), 1e-3) << "vocab " << vocab;
  }
}

// The one-kernel tail of the q/k/v projections (prefill and large decode batches) against the
// ops it replaces, bit for bit: add_bias, rope on q and k, kv_cache_write on separate q, k, v.
// A padding token (slot -1) stores nothing; the other slots stay poisoned.
TEST_F(OpsGpu, QkvBiasRopeCacheIsTheOpSequenceBitForBit) {
  SIESTA_TRACE_SEED();
  struct Shape { int H, Hk, hd; };
  for (Shape sh : {Shape{14, 2, 64}, Shape{4, 4, 128}, Shape{6, 3, 40}})
    for (bool bias : {false, true}) {
      SCOPED_TRACE("H " + std::to_string(sh.H) + " hd " + std::to_string(sh.hd) + " bias " +
                   std::to_string(bias));
      const int n = 37, slots_total = 64, qd = sh.H * sh.hd, kvd = sh.Hk * sh.hd;
      const AttnShape s{sh.H, sh.Hk, sh.hd, 0.125f};
      std::vector<int32_t> slots, positions;
      for (int t = 0; t < n; ++t) {
        slots.push_back(t == 5 ? -1 : (11 + 3 * t) % slots_total);
        positions.push_back(int32_t(rng() % 500));
      }
      const auto Q = randn_bf16(size_t(n) * qd, rng), K = randn_bf16(size_t(n) * kvd, rng);
      const auto V = randn_bf16(size_t(n) * kvd, rng);
      auto bq = upload_bf16(*ops, randn_bf16(size_t(qd), rng, 0.5f));
      auto bk = upload_bf16(*ops, randn_bf16(size_t(kvd), rng, 0.5f));
      auto bv = upload_bf16(*ops, randn_bf16(size_t(kvd), rng, 0.5f));
      auto cs = upload(*ops, rope_cos_sin_table(512, sh.hd, 1e6));
      auto sl = upload(*ops, slots), pos = upload(*ops, positions);
      PagedBatch b;
      b.num_seqs = 1, b.num_tokens = n, b.max_q_len = n;
      b.slot_mapping = sl->as<int32_t>(), b.positions = pos->as<int32_t>();
      const size_t cache_elems = size_t(slots_total) * kvd;
      // The op sequence.
      auto q1 = upload_bf16(*ops, Q), k1 = upload_bf16(*ops, K), v1 = upload_bf16(*ops, V);
      DevBuf kc1(cache_elems * 2), vc1(cache_elems * 2);
      kc1.poison(), vc1.poison();
      if (bias) {
        ops->add_bias(q1->get(), bq->get(), n, qd);
        ops->add_bias(k1->get(), bk->get(), n, kvd);
        ops->add_bias(v1->get(), bv->get(), n, kvd);
      }
      ops->rope(q1->get(), b.positions, n, sh.H, sh.hd, cs->as<float>(), false);
      ops->rope(k1->get(), b.positions, n, sh.Hk, sh.hd, cs->as<float>(), false);
      ops->kv_cache_write(PagedKv{kc1.get(), vc1.get(), 4, 16}, k1->get(), v1->get(), b, s);
      // One kernel, from the packed q | k | v rows one GEMM writes.
      std::vector<float> QKV;
      for (int t = 0; t < n; ++t) {
        QKV.insert(QKV.end(), Q.begin() + t * qd, Q.begin() + (t + 1) * qd);
        QKV.insert(QKV.end(), K.begin() + t * kvd, K.begin() + (t + 1) * kvd);
        QKV.insert(QKV.end(), V.begin() + t * kvd, V.begin() + (t + 1) * kvd);
      }
      auto qkv = upload_bf16(*ops, QKV);
      DevBuf q2(Q.size() * 2), kc2(cache_elems * 2), vc2(cache_elems * 2);
      q2.poison(), kc2.poison(), vc2.poison();
      ops->qkv_bias_rope_cache(q2.get(), qkv->get(), bias ? bq->get() : nullptr,
                               bias ? bk->get() : nullptr, bias ? bv->get() : nullptr,
                               cs->as<float>(), PagedKv{kc2.get(), vc2.get(), 4, 16}, b, s);
      const auto same_bits = [](const std::vector<float>& a, const std::vector<float>& c) {
        if (a.size() != c.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
          if (std::memcmp(&a[i], &c[i], sizeof(float)) != 0) return false;
        return true;
      };
      EXPECT_TRUE(
          same_bits(download_bf16(*ops, q2, Q.size()), download_bf16(*ops, *q1, Q.size())));
      EXPECT_TRUE(same_bits(download_bf16(*ops, kc2, cache_elems),
                            download_bf16(*ops, kc1, cache_elems)));
      EXPECT_TRUE(same_bits(download_bf16(*ops, vc2, cache_elems),
                            download_bf16(*ops, vc1, cache_elems)));
      EXPECT_TRUE(same_bits(download_bf16(*ops, *qkv, QKV.size()), QKV)) << "qkv is only read";
    }
}

TEST_F(OpsGpu, FusedDecodeOpsRejectMoreTokensThanOffered) {
  const int d = 896, too_many = ops->fused_decode_max_tokens(d) + 1;
  EXPECT_EQ(ops->fused_decode_max_tokens(d), 8);
  EXPECT_LT(ops->fused_decode_max_tokens(3584), 8);  // 7b: staged tokens must fit 48 KiB
  DevBuf x(size_t(too_many * d) * 2), w(size_t(d * d) * 2), h(size_t(too_many * d) * 2);
  try {
    ops->norm_gate_up(h.get(), x.get(), w.get(), 1e-6f, w.get(), w.get(), too_many, d, d);
    FAIL() << "no error for " << too_many << " tokens";
  } catch (const KernelError& e) {
    EXPECT_NE(std::string(e.what()).find("fused_decode_max_tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace siesta::kernels::test
