// Ops::decode_layers (every layer of a decode step in one kernel) against the same layers run
// op by op on the same GPU (norm_qkv_rope_cache, paged_attention, gemm, norm_gate_up, gemm):
// the residual stream after the last layer and every K/V row the step stored must agree up to
// accumulation order (the one-kernel attention sums parts of a context separately). Caches
// hold older tokens at shuffled blocks; unused slots are poisoned, so a wrong read is NaN.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu_buffers.hpp"

namespace siesta::kernels::test {
namespace {

struct StepCase {
  int d, inter, H, Hk, hd, layers;
  std::vector<int> ctx, qlen;  // per sequence: context after the step, new tokens in it
};

class DecodeLayersGpu : public OpsGpu, public ::testing::WithParamInterface<StepCase> {};

struct Layer {
  std::unique_ptr<DevBuf> wq, wk, wv, bq, bk, bv, in_norm, wo, post_norm, wg, wu, wd;
};

bool hopper() {
  cudaDeviceProp p{};
  return cudaGetDeviceProperties(&p, 0) == cudaSuccess && p.major >= 9;
}

TEST_P(DecodeLayersGpu, MatchesTheLayersRunOpByOp) {
  SIESTA_TRACE_SEED();
  if (!hopper()) GTEST_SKIP() << "Ops::decode_layers needs compute capability 9.0 (declined here)";
  const StepCase c = GetParam();
  const int qd = c.H * c.hd, kvd = c.Hk * c.hd, nseq = int(c.ctx.size());
  const AttnShape s{c.H, c.Hk, c.hd, float(1 / std::sqrt(double(c.hd)))};
  const float eps = 1e-6f;

  std::vector<Layer> layers(size_t(c.layers));
  for (auto& L : layers) {
    L.wq = upload_bf16(*ops, randn_bf16(size_t(qd) * c.d, rng, 0.05f));
    L.wk = upload_bf16(*ops, randn_bf16(size_t(kvd) * c.d, rng, 0.05f));
    L.wv = upload_bf16(*ops, randn_bf16(size_t(kvd) * c.d, rng, 0.05f));
    L.bq = upload_bf16(*ops, randn_bf16(size_t(qd), rng, 0.3f));
    L.bk = upload_bf16(*ops, randn_bf16(size_t(kvd), rng, 0.3f));
    L.bv = upload_bf16(*ops, randn_bf16(size_t(kvd), rng, 0.3f));
    L.in_norm = upload_bf16(*ops, randn_bf16(size_t(c.d), rng, 0.2f, 1.f));
    L.wo = upload_bf16(*ops, randn_bf16(size_t(c.d) * qd, rng, 0.05f));
    L.post_norm = upload_bf16(*ops, randn_bf16(size_t(c.d), rng, 0.2f, 1.f));
    L.wg = upload_bf16(*ops, randn_bf16(size_t(c.inter) * c.d, rng, 0.05f));
    L.wu = upload_bf16(*ops, randn_bf16(size_t(c.inter) * c.d, rng, 0.05f));
    L.wd = upload_bf16(*ops, randn_bf16(size_t(c.d) * c.inter, rng, 0.05f));
  }

  // Paging: blocks handed out shuffled; the older tokens' K/V written straight into the cache.
  const int bs = 16, num_blocks = 64;
  int max_blocks = 0;
  for (int x : c.ctx) max_blocks = std::max(max_blocks, (x + bs - 1) / bs);
  std::vector<int32_t> free_blocks(static_cast<size_t>(num_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<int32_t> table(size_t(nseq * max_blocks), -1);
  size_t next = 0;
  for (int q = 0; q < nseq; ++q)
    for (int b = 0; b < (c.ctx[size_t(q)] + bs - 1) / bs; ++b)
      table[size_t(q * max_blocks + b)] = free_blocks[next++];
  const size_t cache_elems = size_t(num_blocks) * bs * kvd;
  std::vector<float> poison_free(cache_elems, NAN);
  std::vector<std::vector<float>> kc0(size_t(c.layers), poison_free), vc0 = kc0;
  for (int l = 0; l < c.layers; ++l)
    for (int q = 0; q < nseq; ++q)
      for (int p = 0; p < c.ctx[size_t(q)] - c.qlen[size_t(q)]; ++p) {
        const size_t slot = size_t(table[size_t(q * max_blocks + p / bs)] * bs + p % bs);
        const auto k = randn_bf16(size_t(kvd), rng), v = randn_bf16(size_t(kvd), rng);
        std::copy(k.begin(), k.end(), kc0[size_t(l)].begin() + long(slot * kvd));
        std::copy(v.begin(), v.end(), vc0[size_t(l)].begin() + long(slot * kvd));
      }

  std::vector<int32_t> q_start = {0}, positions, slots;
  for (int q = 0; q < nseq; ++q) {
    q_start.push_back(q_start.back() + c.qlen[size_t(q)]);
    for (int p = c.ctx[size_t(q)] - c.qlen[size_t(q)]; p < c.ctx[size_t(q)]; ++p) {
      positions.push_back(p);
      slots.push_back(table[size_t(q * max_blocks + p / bs)] * bs + p % bs);
    }
  }
  const int n = q_start.back();
  auto table_d = upload(*ops, table), qs = upload(*ops, q_start), pos = upload(*ops, positions);
  auto sl = upload(*ops, slots),
       cl = upload(*ops, std::vector<int32_t>(c.ctx.begin(), c.ctx.end()));
  auto cs = upload(*ops, rope_cos_sin_table(512, c.hd, 1e6));
  PagedBatch b;
  b.num_seqs = nseq;
  b.num_tokens = n;
  b.q_start = qs->as<int32_t>();
  b.context_len = cl->as<int32_t>();
  b.block_table = table_d->as<int32_t>();
  b.max_blocks_per_seq = max_blocks;
  b.slot_mapping = sl->as<int32_t>();
  b.positions = pos->as<int32_t>();
  b.max_q_len = *std::max_element(c.qlen.begin(), c.qlen.end());
  b.max_context_len = *std::max_element(c.ctx.begin(), c.ctx.end());
  const auto X0 = randn_bf16(size_t(n) * c.d, rng);

  // One run: fresh caches and x, then the step one way or the other; x and the caches after.
  struct After {
    std::vector<float> x;
    std::vector<std::vector<float>> k, v;
  };
  auto run = [&](bool one_call) {
    std::vector<std::unique_ptr<DevBuf>> kc, vc;
    std::vector<PagedKv> caches;
    for (int l = 0; l < c.layers; ++l) {
      kc.push_back(upload_bf16(*ops, kc0[size_t(l)]));
      vc.push_back(upload_bf16(*ops, vc0[size_t(l)]));
      caches.push_back(PagedKv{kc.back()->get(), vc.back()->get(), num_blocks, bs});
    }
    auto x = upload_bf16(*ops, X0);
    DevBuf q(size_t(n) * qd * 2), attn(size_t(n) * qd * 2), h(size_t(n) * c.inter * 2);
    DevBuf part(Ops::decode_step_partials_bytes(n, s));
    q.poison(), attn.poison(), h.poison(), part.poison();
    if (one_call) {
      std::vector<Ops::DecodeLayerWeights> w(size_t(c.layers));
      for (int l = 0; l < c.layers; ++l) {
        const Layer& L = layers[size_t(l)];
        auto& lw = w[size_t(l)];
        lw.qkv = {L.wq->get(), L.wk->get(), L.wv->get(), L.bq->get(), L.bk->get(), L.bv->get()};
        lw.input_norm = L.in_norm->get(), lw.o = L.wo->get(), lw.post_norm = L.post_norm->get();
        lw.gate = L.wg->get(), lw.up = L.wu->get(), lw.down = L.wd->get();
      }
      Ops::DecodeStep st;
      st.x = x->get(), st.d = c.d, st.inter = c.inter, st.eps = eps;
      st.n_layers = c.layers, st.layers = w.data(), st.caches = caches.data();
      st.cos_sin_f32 = cs->as<float>(), st.q = q.get(), st.h = h.get(), st.partials = part.get();
      EXPECT_TRUE(ops->decode_layers(st, b, s)) << "declined a Hopper-sized call";
    } else {
      for (int l = 0; l < c.layers; ++l) {
        const Layer& L = layers[size_t(l)];
        ops->norm_qkv_rope_cache(
            q.get(), x->get(), L.in_norm->get(), eps, c.d,
            {L.wq->get(), L.wk->get(), L.wv->get(), L.bq->get(), L.bk->get(), L.bv->get()},
            cs->as<float>(), caches[size_t(l)], b, s);
        ops->paged_attention(attn.get(), q.get(), caches[size_t(l)], b, s);
        auto proj = [&](void* y, const void* in, const DevBuf& w, int64_t rows, int64_t k) {
          GemmArgs g;
          g.trans_b = true;
          g.m = n, g.n = rows, g.k = k;
          g.a = in, g.lda = k, g.b = w.get(), g.ldb = k;
          g.beta = 1.f, g.c = y, g.ldc = c.d, g.c_dtype = DType::BF16;
          ops->gemm(g);
        };
        proj(x->get(), attn.get(), *L.wo, c.d, qd);
        ops->norm_gate_up(h.get(), x->get(), L.post_norm->get(), eps, L.wg->get(), L.wu->get(), n,
                          c.d, c.inter);
        proj(x->get(), h.get(), *L.wd, c.d, c.inter);
      }
    }
    After a;
    a.x = download_bf16(*ops, *x, X0.size());
    for (int l = 0; l < c.layers; ++l) {
      a.k.push_back(download_bf16(*ops, *kc[size_t(l)], cache_elems));
      a.v.push_back(download_bf16(*ops, *vc[size_t(l)], cache_elems));
    }
    return a;
  };

  const After ref = run(false);
  const After got = run(true);
  if (HasFailure()) return;
  EXPECT_LT(rel_err(got.x, ref.x), 2e-2);
  for (int l = 0; l < c.layers; ++l)
    for (int32_t slot : slots) {
      const auto row = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + long(slot) * kvd, v.begin() + long(slot + 1) * kvd);
      };
      EXPECT_LT(rel_err(row(got.k[size_t(l)]), row(ref.k[size_t(l)])), 2e-2) << "layer " << l;
      EXPECT_LT(rel_err(row(got.v[size_t(l)]), row(ref.v[size_t(l)])), 2e-2) << "layer " << l;
    }
  // Nothing else in the caches moved (the poisoned slots stay NaN: compare as bits).
  for (int l = 0; l < c.layers; ++l)
    for (size_t i = 0; i < cache_elems; ++i) {
      if (std::find(slots.begin(), slots.end(), int32_t(i / size_t(kvd))) != slots.end()) continue;
      for (const auto* side : {&got.k, &got.v}) {
        const float a = (*side)[size_t(l)][i];
        const float e = (side == &got.k ? kc0 : vc0)[size_t(l)][i];
        ASSERT_TRUE(a == e || (std::isnan(a) && std::isnan(e)))
            << "layer " << l << " element " << i;
      }
    }
  // A second launch (the counters it synchronises blocks with were left at zero) repeats the
  // first bit for bit: the sums never depend on timing.
  const After again = run(true);
  EXPECT_EQ(again.x, got.x);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeLayersGpu,
    ::testing::Values(
        // batch-1 decode, 0.5b-like heads (14 of 64, 2 KV), a context past one part per split
        StepCase{896, 1216, 14, 2, 64, 3, {200}, {1}},
        // three sequences: decodes and a 2-token extension (causal inside the step)
        StepCase{256, 640, 4, 2, 64, 2, {5, 70, 129}, {1, 2, 1}},
        // head_dim 128, 8 tokens (the most it takes), one KV head per 4 query heads
        StepCase{
            512, 1024, 8, 2, 128, 2, {9, 17, 30, 1, 64, 3, 40, 100}, {1, 1, 1, 1, 1, 1, 1, 1}}),
    [](const ::testing::TestParamInfo<StepCase>& i) {
      return "d" + std::to_string(i.param.d) + "_hd" + std::to_string(i.param.hd) + "_seqs" +
             std::to_string(i.param.ctx.size());
    });

TEST_F(OpsGpu, DecodeLayersDeclinesWhatItCannotTakeWithoutTouchingAnything) {
  const AttnShape odd_head{4, 2, 32, 0.1f};
  DevBuf x(64);
  x.poison();
  Ops::DecodeStep st;
  st.x = x.get(), st.d = 16, st.inter = 16, st.n_layers = 1;
  PagedBatch b;
  b.num_tokens = 1;
  EXPECT_FALSE(ops->decode_layers(st, b, odd_head));  // head_dim 32; also no weights given
  b.num_tokens = Ops::kDecodeStepMaxTokens + 1;
  EXPECT_FALSE(ops->decode_layers(st, b, AttnShape{4, 2, 64, 0.1f}));
  const auto after = download<uint8_t>(*ops, x, 64);
  EXPECT_TRUE(std::all_of(after.begin(), after.end(), [](uint8_t v) { return v == 0xff; }));
}

}  // namespace
}  // namespace siesta::kernels::test
