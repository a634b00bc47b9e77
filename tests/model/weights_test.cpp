// Parameter names, the one-buffer layout, and the presets' shapes.
#include <gtest/gtest.h>

#include "model_test_util.hpp"

namespace siesta::model {
namespace {

TEST(ParameterSpecs, UseHfNamesInFixedOrderAndCountEveryParameter) {
  ModelConfig c = test::tiny_config();
  auto specs = parameter_specs(c);
  // embed + 2 layers x (2 norms + 4 attn + 3 bias + 3 mlp) + final norm + lm_head
  ASSERT_EQ(specs.size(), 1u + 2 * 12 + 1 + 1);
  EXPECT_EQ(specs[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(specs[0].shape, (Shape{264, 64}));
  EXPECT_EQ(specs[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(specs[3].name, "model.layers.0.self_attn.k_proj.weight");  // q, k, v back to back
  EXPECT_EQ(specs[3].shape, (Shape{32, 64}));  // k_proj: 2 kv heads x 16
  EXPECT_EQ(specs[5].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  int64_t total = 0;
  for (auto& s : specs) total += numel(s.shape);
  EXPECT_EQ(total, c.num_parameters());
  c.tie_word_embeddings = true;
  EXPECT_EQ(parameter_specs(c).back().name, "model.norm.weight");
}

TEST(WeightsLayout, OffsetsAreAlignedAndIdenticalAcrossDtypes) {
  ModelConfig c = test::tiny_config();
  HostWeights f32(c, DType::F32), bf16(c, DType::BF16);
  ASSERT_EQ(f32.weights().tensors.size(), bf16.weights().tensors.size());
  EXPECT_EQ(f32.bytes(), 2 * bf16.bytes());
  EXPECT_EQ(f32.bytes(), size_t(weights_numel(c)) * 4);
  int64_t prev_end = 0;
  for (size_t i = 0; i < f32.weights().tensors.size(); ++i) {
    const auto& a = f32.weights().tensors[i];
    EXPECT_EQ(a.offset_elems, bf16.weights().tensors[i].offset_elems) << a.name;
    EXPECT_EQ(a.offset_elems % kWeightAlignElems, 0) << a.name;
    EXPECT_GE(a.offset_elems, prev_end) << a.name;
    prev_end = a.offset_elems + a.view.numel();
  }
  EXPECT_LE(prev_end, weights_numel(c));
  EXPECT_EQ(f32.weights().layers[1].v_bias.shape, (Shape{32}));
  EXPECT_EQ(f32.weights().at("model.layers.1.mlp.down_proj.weight").shape, (Shape{64, 160}));
  EXPECT_THROW(f32.weights().at("model.layers.9.mlp.down_proj.weight"), ModelError);
}

TEST(WeightsLayout, TiedLmHeadIsTheEmbeddingAndHasNoTensorOfItsOwn) {
  ModelConfig c = test::tiny_config();
  c.tie_word_embeddings = true;
  HostWeights w(c, DType::F32);
  EXPECT_EQ(w.weights().lm_head.data, w.weights().embed_tokens.data);
  for (auto& t : w.weights().named()) EXPECT_NE(t.name, "lm_head.weight");
}

TEST(Presets, HaveTheDocumentedShapes) {
  auto mini = load_preset("mini"), small = load_preset("small");
  EXPECT_GE(mini.num_parameters(), 1'000'000);
  EXPECT_LE(mini.num_parameters(), 3'000'000);
  EXPECT_GE(small.num_parameters(), 20'000'000);
  EXPECT_LE(small.num_parameters(), 50'000'000);
  for (auto* c : {&mini, &small}) EXPECT_EQ(c->vocab_size, 264);
  auto q05 = load_preset("0.5b");
  EXPECT_EQ(q05.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(q05.tie_word_embeddings && q05.attention_bias);
  EXPECT_EQ(q05.head_dim, 64);
  EXPECT_NEAR(double(q05.num_parameters()), 494e6, 2e6);  // Qwen2.5-0.5B: 494M
  auto q7 = load_preset("7b");
  EXPECT_FALSE(q7.tie_word_embeddings);
  EXPECT_NEAR(double(q7.num_parameters()), 7.62e9, 0.02e9);  // Qwen2.5-7B: 7.62B
  EXPECT_THROW(load_preset("no-such-preset"), ModelError);
}

}  // namespace
}  // namespace siesta::model
