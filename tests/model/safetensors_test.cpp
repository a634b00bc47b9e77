// safetensors files and HF folders: bit-exact round trips (fp32/bf16, single/sharded), dtype
// conversion on load, and malformed files rejected with an error naming the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "model_test_util.hpp"

namespace siesta::model {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

// Message of the ModelError f throws (empty, and a test failure, when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ModelError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ModelError";
  return {};
}

struct RoundTrip : ::testing::TestWithParam<std::tuple<DType, size_t>> {};

TEST_P(RoundTrip, SaveThenLoadIsBitExact) {
  auto [dtype, shard_bytes] = GetParam();
  ModelConfig c = test::tiny_config();
  HostWeights src(c, dtype);
  init_random_weights(c, src.weights(), 7, 0.5f);
  TempDir dir("siesta-rt");
  save_model_folder(dir.path, c, src.weights(), shard_bytes);
  if (shard_bytes) {
    EXPECT_TRUE(fs::exists(dir.path / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(dir.path / "model.safetensors"));
  }
  ModelFolder folder = load_model_folder(dir.path);
  if (shard_bytes) {
    EXPECT_GT(folder.files().size(), 2u);
  }
  EXPECT_EQ(folder.config().hidden_size, c.hidden_size);
  EXPECT_EQ(folder.config().attention_bias, true);
  HostWeights dst(c, dtype);
  auto ops = kernels::make_cpu_ops();
  folder.load_into(dst.weights(), *ops);
  ASSERT_EQ(src.bytes(), dst.bytes());
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), src.bytes()), 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip,
                         ::testing::Combine(::testing::Values(DType::F32, DType::BF16),
                                            ::testing::Values(size_t(0), size_t(40000))));

TEST(ModelFolderLoad, ConvertsBf16FilesIntoF32Weights) {
  ModelConfig c = test::tiny_config();
  HostWeights src(c, DType::BF16);
  init_random_weights(c, src.weights(), 3);
  TempDir dir("siesta-conv");
  save_model_folder(dir.path, c, src.weights());
  HostWeights dst(c, DType::F32);
  auto ops = kernels::make_cpu_ops();
  load_model_folder(dir.path).load_into(dst.weights(), *ops);
  const auto& a = src.weights().at("model.layers.1.mlp.up_proj.weight");
  const auto& b = dst.weights().at("model.layers.1.mlp.up_proj.weight");
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(b.as<float>()[i], bf16_to_f32(a.as<uint16_t>()[i]));
}

TEST(ModelFolderLoad, PresetCreateWritesConfigAndRandomWeights) {
  TempDir dir("siesta-create");
  ModelConfig c = test::tiny_config();
  create_random_model(c, 11, dir.path, DType::BF16);
  ModelFolder f = load_model_folder(dir.path);
  EXPECT_EQ(f.config().torch_dtype, "bfloat16");
  const auto& norm = f.tensor("model.norm.weight");
  EXPECT_EQ(norm.dtype, DType::BF16);
  EXPECT_EQ(bf16_to_f32(static_cast<const uint16_t*>(norm.data)[0]), 1.f);
  const auto& bias = f.tensor("model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(bf16_to_f32(static_cast<const uint16_t*>(bias.data)[3]), 0.f);
}

// ---- malformed single files ------------------------------------------------------------

void write_raw(const fs::path& p, const std::string& header, size_t data_bytes,
               uint64_t header_len_override = 0) {
  std::ofstream f(p, std::ios::binary);
  uint64_t len = header_len_override ? header_len_override : header.size();
  for (int i = 0; i < 8; ++i) f.put(char((len >> (8 * i)) & 0xff));
  f << header << std::string(data_bytes, '\0');
}

TEST(SafetensorsMalformed, HeaderLengthPastTheEndOfTheFile) {
  TempDir d("siesta-bad");
  write_raw(d.path / "x.safetensors", "{}", 0, 1'000'000);
  EXPECT_NE(error_of([&] { SafetensorsFile::open(d.path / "x.safetensors"); }).find("header length 1000000"),
            std::string::npos);
}

TEST(SafetensorsMalformed, InvalidJsonHeader) {
  TempDir d("siesta-bad");
  write_raw(d.path / "x.safetensors", "{\"a\": ", 0);
  EXPECT_NE(error_of([&] { SafetensorsFile::open(d.path / "x.safetensors"); }).find("not valid JSON"),
            std::string::npos);
}

TEST(SafetensorsMalformed, EachBadEntryIsRejectedNamingTheTensor) {
  TempDir d("siesta-bad");
  struct Case { const char* header; size_t data; const char* expect; };
  const Case cases[] = {
      {R"({"w.out_of_range": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4,
       "tensor 'w.out_of_range': data_offsets [0, 8] out of range"},
      {R"({"w.span": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8,
       "tensor 'w.span': F32 [3] needs 12 bytes"},
      {R"({"w.dtype": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8,
       "tensor 'w.dtype': unknown dtype 'F64'"},
      {R"({"w.a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "w.b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12,
       "tensor 'w.b' overlaps tensor 'w.a'"},
      {R"({"w.neg": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 0,
       "tensor 'w.neg': shape must hold non-negative integers"},
      {R"({"w.fields": {"dtype": "F32", "shape": [1]}})", 4,
       "tensor 'w.fields': needs dtype"},
  };
  for (const auto& c : cases) {
    write_raw(d.path / "x.safetensors", c.header, c.data);
    std::string msg = error_of([&] { SafetensorsFile::open(d.path / "x.safetensors"); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "got: " << msg;
  }
}

// ---- folders whose tensors do not match the config -----------------------------------

struct BadFolder : ::testing::Test {
  TempDir dir{"siesta-badfolder"};
  ModelConfig cfg = test::tiny_config();
  HostWeights w{cfg, DType::F32};
  std::vector<std::pair<std::string, TensorView>> tensors;
  void SetUp() override {
    save_model_folder(dir.path, cfg, w.weights());
    for (const auto& t : w.weights().named()) tensors.emplace_back(t.name, t.view);
  }
  std::string load_error() {
    write_safetensors(dir.path / "model.safetensors", tensors);
    return error_of([&] { load_model_folder(dir.path); });
  }
};

TEST_F(BadFolder, MissingTensorIsNamed) {
  const std::string name = "model.layers.0.self_attn.k_proj.bias";
  const auto it = std::find_if(tensors.begin(), tensors.end(),
                               [&](const auto& t) { return t.first == name; });
  ASSERT_NE(it, tensors.end());
  tensors.erase(it);
  EXPECT_NE(load_error().find("missing tensor '" + name + "'"),
            std::string::npos);
}

TEST_F(BadFolder, ExtraTensorIsNamed) {
  tensors.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", tensors[1].second);
  EXPECT_NE(load_error().find("unexpected tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'"),
            std::string::npos);
}

TEST_F(BadFolder, WrongShapeIsNamed) {
  tensors[2].second.shape = {64, 32};  // q_proj stored transposed
  EXPECT_NE(load_error().find("tensor 'model.layers.0.self_attn.q_proj.weight'"), std::string::npos);
}

TEST_F(BadFolder, IntegerDtypeIsNamed) {
  tensors[1].second.dtype = DType::I32;  // same byte size as F32
  std::string msg = load_error();
  EXPECT_NE(msg.find("'model.layers.0.input_layernorm.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("I32"), std::string::npos) << msg;
}

TEST_F(BadFolder, IndexPointingAtTheWrongShardIsRejected) {
  fs::remove(dir.path / "model.safetensors");
  save_model_folder(dir.path, cfg, w.weights(), 40000);
  std::ifstream in(dir.path / "model.safetensors.index.json");
  std::string idx((std::istreambuf_iterator<char>(in)), {});
  auto pos = idx.find("\"model.norm.weight\":\"model-");
  ASSERT_NE(pos, std::string::npos);
  idx.replace(idx.find("-of-", pos) - 5, 5, "00001");  // claims shard 1 holds the final norm
  std::ofstream(dir.path / "model.safetensors.index.json") << idx;
  EXPECT_NE(error_of([&] { load_model_folder(dir.path); }).find("'model.norm.weight'"),
            std::string::npos);
}

}  // namespace
}  // namespace siesta::model
