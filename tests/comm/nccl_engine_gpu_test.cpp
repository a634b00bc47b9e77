// The weight syncer's GPU path end to end: an engine (small preset) holding other weights goes
// to sleep(2), wakes only its weights, receives new weights through an NCCL communicator of size
// 1 straight into its parameter memory (fp32 trainer-side sources on the GPU, cast to bf16 on
// the way), wakes its KV cache and must then behave exactly like an engine freshly loaded with
// those weights: the same bytes in every parameter, the same greedy tokens and log-probs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "gpu_test.hpp"
#include "siesta/comm.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/model/folder.hpp"
#include "siesta/model/presets.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace siesta::comm::test {
namespace {

#ifdef SIESTA_WITH_CUDA

// A random model folder removed at the end of the test.
struct ModelDir {
  std::filesystem::path path;
  ModelDir(const std::string& preset, uint64_t seed) {
    path = std::filesystem::temp_directory_path() /
           ("siesta_nccl_engine_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
    model::create_random_model(model::load_preset(preset), seed, path, DType::BF16);
  }
  ~ModelDir() { std::filesystem::remove_all(path); }
};

infer::EngineOptions engine_options(const std::filesystem::path& dir) {
  infer::EngineOptions o;
  o.model = dir.string();
  o.device = Device::cuda(0);
  o.kv_cache_bytes = 256ull << 20;
  o.max_num_seqs = 8;
  o.max_model_len = 256;
  o.max_num_batched_tokens = 512;
  return o;
}

struct Outputs {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> logprobs;
};
Outputs generate(infer::InferenceEngine& e) {
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7}, {200, 100, 50, 25, 12},
                                               {9, 99, 199, 9, 99}};
  infer::SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 16;
  p.ignore_eos = true;
  p.logprobs = true;
  Outputs out;
  for (const auto& r : e.generate(prompts, p)) {
    out.tokens.push_back(r.outputs.at(0).token_ids);
    out.logprobs.push_back(r.outputs.at(0).logprobs);
  }
  return out;
}

TEST(NcclEngineSync, EngineAfterSyncBehavesLikeAFreshlyLoadedOne) {
  SIESTA_REQUIRE_GPU();
  ModelDir next("small", 101), old("small", 202);
  Outputs want;
  {
    infer::InferenceEngine fresh(engine_options(next.path));
    want = generate(fresh);
  }
  infer::InferenceEngine e(engine_options(old.path));
  const Outputs before = generate(e);
  ASSERT_NE(before.logprobs, want.logprobs) << "the two random models should differ";

  // Trainer side: fp32 master weights on the GPU, in the engine's parameter order.
  const auto folder = model::load_model_folder(next.path);
  std::vector<NamedTensor> sources;
  std::vector<void*> owned;
  for (const auto& w : e.weight_infos()) {
    const auto& entry = folder.tensor(w.name);
    const size_t n = size_t(numel(entry.shape));
    std::vector<float> f32(n);
    convert_host(entry.data, entry.dtype, f32.data(), DType::F32, n);
    void* p = nullptr;
    ASSERT_EQ(cudaMalloc(&p, n * 4), cudaSuccess);
    owned.push_back(p);
    ASSERT_EQ(cudaMemcpy(p, f32.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
    sources.push_back({w.name, TensorView{p, DType::F32, entry.shape, Device::cuda(0)}});
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  e.sleep(2);
  e.wake_up({"weights"});
  EXPECT_FALSE(e.sleep_state().weights_valid);
  std::vector<NamedTensor> destinations;
  for (auto& [name, view] : e.weight_destinations()) destinations.push_back({name, view});
  NcclTransport t(make_unique_id(), 0, 1, 0, {20000});
  SyncOptions so;
  so.bucket_bytes = 8ull << 20;   // several buckets for a ~45 MB model
  WeightReceiver local(t, destinations, so);
  const SyncStats st = WeightSender(t, so).send(sources, &local);
  ASSERT_TRUE(local.weights_valid());
  EXPECT_GT(st.bytes, 0u);
  e.weights_received();
  e.wake_up({"kv_cache"});
  EXPECT_FALSE(e.is_sleeping());

  for (const auto& w : e.weight_infos()) {
    const auto& entry = folder.tensor(w.name);
    const auto got = e.read_weight(w.name);
    ASSERT_EQ(got.size(), entry.bytes) << w.name;
    EXPECT_EQ(std::memcmp(got.data(), entry.data, got.size()), 0) << w.name << " differs";
  }
  const Outputs after = generate(e);
  EXPECT_EQ(after.tokens, want.tokens);
  ASSERT_EQ(after.logprobs.size(), want.logprobs.size());
  for (size_t i = 0; i < want.logprobs.size(); ++i) {
    ASSERT_EQ(after.logprobs[i].size(), want.logprobs[i].size());
    for (size_t j = 0; j < want.logprobs[i].size(); ++j)
      EXPECT_NEAR(after.logprobs[i][j], want.logprobs[i][j], 1e-5)
          << "prompt " << i << " token " << j << " (same weights, same kernels: equal log-probs)";
  }
  for (void* p : owned) cudaFree(p);
}

#else

TEST(NcclEngineSync, NeedsACudaBuild) { GTEST_SKIP() << "CPU-only build: no NCCL transport"; }

#endif

}  // namespace
}  // namespace siesta::comm::test
