// InferenceModel against the contiguous forward: paged decode one token at a time, batched
// prefill of different-length sequences, and a mixed prefill + decode batch.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model_test_util.hpp"

namespace siesta::model {
namespace {

// The tiny preset, whose q/k/v and gate/up weights lie back to back (one GEMM each), and the
// same with sizes that break the 128-element alignment between them (three GEMMs and two).
ModelConfig config_for(bool packed) {
  ModelConfig c = test::tiny_config();
  if (!packed) {
    c.hidden_size = 36, c.num_attention_heads = 3, c.num_key_value_heads = 1;
    c.intermediate_size = 44;  // q 48 x 36 and gate 44 x 36: not multiples of 128 elements
  }
  return c;
}

struct InferenceFixture : ::testing::TestWithParam<bool> {
  ModelConfig cfg = config_for(GetParam());
  std::unique_ptr<kernels::Ops> ops = kernels::make_cpu_ops();
  HostWeights w{cfg, DType::F32};
  std::vector<float> rope = rope_table(cfg);
  static constexpr int kBlocks = 32, kBlockSize = 4, kMaxBlocks = 8, kMaxTokens = 64;
  std::vector<std::byte> kv_mem, ws;
  std::unique_ptr<InferenceModel> model;
  const int V = cfg.vocab_size;

  void SetUp() override {
    test::randomize(w.weights(), 5);
    kv_mem.resize(kv_cache_bytes(cfg, DType::F32, kBlocks, kBlockSize));
    ws.resize(InferenceModel::workspace_bytes(cfg, DType::F32, kMaxTokens));
    model = std::make_unique<InferenceModel>(
        cfg, *ops, w.weights(), rope.data(),
        bind_kv_caches(cfg, kv_mem.data(), DType::F32, kBlocks, kBlockSize), ws.data(), ws.size(),
        kMaxTokens);
  }

  // Logits [T, V] of one sequence through the training path's contiguous forward.
  std::vector<float> full_logits(const std::vector<int32_t>& tokens) {
    const int T = int(tokens.size());
    HostWeights g(cfg, DType::F32);
    std::vector<std::byte> acts(TrainingModel::activation_bytes(cfg, DType::F32, 1, T));
    TrainingModel tm(cfg, *ops, w.weights(), g.weights(), rope.data(), acts.data(), acts.size(), 1, T);
    std::vector<float> out(size_t(T) * V);
    tm.logits(tokens.data(), 1, T, out.data());
    return out;
  }

  // One step: for each sequence s, tokens [from[s], to[s]) of seqs[s] are new.
  struct Seq { const std::vector<int32_t>* tokens; std::vector<int32_t> blocks; int from, to; };
  std::vector<float> step(const std::vector<Seq>& seqs) {
    std::vector<int32_t> toks, qstart = {0}, ctx, table, slots, pos, rows;
    for (const auto& s : seqs) {
      for (int p = s.from; p < s.to; ++p) {
        toks.push_back((*s.tokens)[size_t(p)]);
        slots.push_back(s.blocks[size_t(p / kBlockSize)] * kBlockSize + p % kBlockSize);
        pos.push_back(p);
      }
      qstart.push_back(int32_t(toks.size()));
      rows.push_back(int32_t(toks.size()) - 1);
      ctx.push_back(s.to);
      auto b = s.blocks;
      b.resize(kMaxBlocks, 0);
      table.insert(table.end(), b.begin(), b.end());
    }
    kernels::PagedBatch b;
    b.num_seqs = int(seqs.size());
    b.num_tokens = int(toks.size());
    b.q_start = qstart.data(), b.context_len = ctx.data(), b.block_table = table.data();
    b.max_blocks_per_seq = kMaxBlocks, b.slot_mapping = slots.data(), b.positions = pos.data();
    b.max_q_len = 0, b.max_context_len = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      b.max_q_len = std::max(b.max_q_len, seqs[s].to - seqs[s].from);
      b.max_context_len = std::max(b.max_context_len, seqs[s].to);
    }
    std::vector<float> logits(seqs.size() * size_t(V));
    model->forward(toks.data(), b, rows.data(), int(rows.size()), logits.data());
    return logits;
  }

  void expect_row_eq(const float* got, const float* want, const std::string& what) {
    // Same fp32 math in a different order (paged gather vs contiguous): agree to ~1e-5.
    for (int j = 0; j < V; ++j) ASSERT_NEAR(got[j], want[j], 2e-4) << what << " vocab " << j;
  }
};

// The two cases take the paths they are named for: q, k, v (and gate, up) back to back or not.
TEST_P(InferenceFixture, WeightsLieAsTheCaseSays) {
  const LayerWeights& L = w.weights().layers[0];
  const auto* q = static_cast<const std::byte*>(L.q_proj.data);
  const auto* g = static_cast<const std::byte*>(L.gate_proj.data);
  EXPECT_EQ(L.k_proj.data == q + L.q_proj.numel() * 4 &&
                L.v_proj.data == q + (L.q_proj.numel() + L.k_proj.numel()) * 4,
            GetParam());
  EXPECT_EQ(L.up_proj.data == g + L.gate_proj.numel() * 4, GetParam());
}

TEST_P(InferenceFixture, PagedDecodeOneTokenAtATimeEqualsFullSequenceForward) {
  auto tokens = test::random_tokens(13, V, 6);
  auto want = full_logits(tokens);
  std::vector<int32_t> blocks = {7, 2, 19, 0};  // scattered, out of order
  auto first = step({{&tokens, blocks, 0, 3}});  // prefill 3
  expect_row_eq(first.data(), &want[2 * size_t(V)], "prefill last row");
  for (int p = 3; p < 13; ++p) {
    auto l = step({{&tokens, blocks, p, p + 1}});
    expect_row_eq(l.data(), &want[size_t(p) * V], "decode position " + std::to_string(p));
  }
}

TEST_P(InferenceFixture, BatchedPrefillOfDifferentLengthsEqualsOneAtATime) {
  auto a = test::random_tokens(9, V, 7), b = test::random_tokens(2, V, 8),
       c = test::random_tokens(14, V, 9);
  auto batched = step({{&a, {0, 1, 2}, 0, 9}, {&b, {3}, 0, 2}, {&c, {4, 5, 6, 7}, 0, 14}});
  expect_row_eq(&batched[0], &full_logits(a)[8 * size_t(V)], "seq a");
  expect_row_eq(&batched[size_t(V)], &full_logits(b)[1 * size_t(V)], "seq b");
  expect_row_eq(&batched[2 * size_t(V)], &full_logits(c)[13 * size_t(V)], "seq c");
}

TEST_P(InferenceFixture, MixedPrefillAndDecodeInOneBatch) {
  auto a = test::random_tokens(6, V, 10), b = test::random_tokens(5, V, 11);
  step({{&a, {9, 10}, 0, 5}});                                   // a prefilled up to 5
  auto l = step({{&a, {9, 10}, 5, 6}, {&b, {11, 12}, 0, 5}});    // a decodes, b prefills
  expect_row_eq(&l[0], &full_logits(a)[5 * size_t(V)], "decoding a");
  expect_row_eq(&l[size_t(V)], &full_logits(b)[4 * size_t(V)], "prefilling b");
}

TEST_P(InferenceFixture, TrainingLogprobsAreTheLogSoftmaxOfItsLogits) {
  auto tokens = test::random_tokens(6, V, 12);
  auto logits = full_logits(tokens);
  HostWeights g(cfg, DType::F32);
  std::vector<std::byte> acts(TrainingModel::activation_bytes(cfg, DType::F32, 1, 6));
  TrainingModel tm(cfg, *ops, w.weights(), g.weights(), rope.data(), acts.data(), acts.size(), 1, 6);
  std::vector<float> lp(5);
  tm.forward(tokens.data(), 1, 6, lp.data(), nullptr);
  for (int t = 0; t < 5; ++t) {
    const float* z = &logits[size_t(t) * V];
    double mx = *std::max_element(z, z + V), s = 0;
    for (int j = 0; j < V; ++j) s += std::exp(z[j] - mx);
    EXPECT_NEAR(lp[size_t(t)], z[tokens[size_t(t) + 1]] - mx - std::log(s), 1e-4);
  }
}

TEST_P(InferenceFixture, RejectsMoreTokensThanTheWorkspaceHolds) {
  auto tokens = test::random_tokens(kMaxTokens + 1, V, 13);
  std::vector<int32_t> blocks(17);
  std::iota(blocks.begin(), blocks.end(), 0);
  EXPECT_THROW(step({{&tokens, blocks, 0, kMaxTokens + 1}}), ModelError);
}

INSTANTIATE_TEST_SUITE_P(Weights, InferenceFixture, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Packed" : "Apart"; });

}  // namespace
}  // namespace siesta::model
