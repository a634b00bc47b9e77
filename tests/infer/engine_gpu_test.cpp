// The engine on a GPU with the small preset (a random bf16 model written to a temp folder and
// read back by the real loader): the sleep/wake matrix of engine_test.cpp, and device memory
// really returned to the driver by sleep (cudaMemGetInfo through the pool): after sleep(2)
// used memory is at most the CUDA context + 1% of what the engine held.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "engine_fixture.hpp"
#include "gpu_test.hpp"
#include "sleep_matrix.hpp"

using namespace siesta;
using namespace siesta::infer;
using namespace siesta::infer::testing;

namespace {

constexpr uint64_t MiB = 1ull << 20;

// A modest KV cache: the matrix is about outputs, not size.
EngineOptions small_options() {
  EngineOptions o;
  o.model = model_dir("small", DType::BF16).string();
  o.device = Device::cuda(0);
  o.kv_cache_bytes = 256 * MiB;
  o.block_size = 16;
  o.max_num_seqs = 16;
  o.max_model_len = 512;
  o.max_num_batched_tokens = 1024;
  return o;
}

double gib(uint64_t b) { return double(b) / double(1ull << 30); }

}  // namespace

TEST(EngineSleepGpu, Level1ThenWakeAllGivesIdenticalOutputs) {
  SIESTA_REQUIRE_GPU();
  check_level1_wake_all_is_identical(small_options());
}

TEST(EngineSleepGpu, Level2WakeWeightsUpdateSameWeightsWakeKvGivesIdenticalOutputs) {
  SIESTA_REQUIRE_GPU();
  check_level2_update_then_wake_kv_is_identical(small_options());
}

TEST(EngineSleepGpu, Level2WithoutNewWeightsRefusesWithAClearError) {
  SIESTA_REQUIRE_GPU();
  check_level2_without_update_refuses(small_options());
}

TEST(EngineSleepGpu, IsSleepingUntilEveryTagIsAwake) {
  SIESTA_REQUIRE_GPU();
  check_is_sleeping_truth_table(small_options());
}

// Decode steps replay CUDA graphs captured before the sleep: the addresses survive, so the
// same graphs serve after the wake and give the same tokens.
TEST(EngineSleepGpu, CudaGraphsCapturedBeforeSleepServeAfterWake) {
  SIESTA_REQUIRE_GPU();
  InferenceEngine e(small_options());
  ASSERT_GT(e.stats().num_cuda_graphs, 0);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 16;
  p.ignore_eos = true;
  auto ps = prompts(3, e.model_config().vocab_size, 21);
  auto before = tokens_of(e.generate(ps, p));
  const auto graphs = e.stats().num_cuda_graphs;
  const auto replays = e.stats().num_graph_replays;
  EXPECT_GT(replays, 0u) << "decode steps should replay graphs";
  e.sleep(1);
  e.wake_up();
  EXPECT_EQ(tokens_of(e.generate(ps, p)), before);
  EXPECT_EQ(e.stats().num_cuda_graphs, graphs) << "no re-capture after wake";
  EXPECT_GT(e.stats().num_graph_replays, replays);
}

// Async scheduling on the GPU: decode steps queued ahead, their input tokens copied on the
// device from the draw before them, replaying the same graphs; the tokens are those of one
// step at a time (greedy and seeded temperature rows, batches that shrink as requests end).
TEST(EngineGpu, AsyncSchedulingGivesTheTokensOfOneStepAtATime) {
  SIESTA_REQUIRE_GPU();
  auto ps = prompts(5, 264, 23);
  std::vector<SamplingParams> params;
  for (int i = 0; i < 5; ++i) {
    SamplingParams p;
    p.temperature = i % 2 ? 0.7f : 0.f;
    p.seed = uint64_t(100 + i);
    p.max_tokens = 12 + 5 * i;
    p.ignore_eos = true;
    p.logprobs = true;
    params.push_back(p);
  }
  auto run = [&](bool async_scheduling, uint64_t& lookahead) {
    EngineOptions o = small_options();
    o.async_scheduling = async_scheduling;
    InferenceEngine e(o);
    std::vector<RequestId> ids;
    for (size_t i = 0; i < ps.size(); ++i) ids.push_back(e.add_request(ps[i], params[i]));
    std::map<RequestId, RequestOutput> done;
    while (e.has_unfinished())
      for (auto& out : e.step()) done[out.id] = std::move(out);
    lookahead = e.stats().num_lookahead_steps;
    EXPECT_GT(e.stats().num_graph_replays, 0u);
    std::vector<CompletionOutput> outs;
    for (RequestId id : ids) outs.push_back(done.at(id).outputs[0]);
    return outs;
  };
  uint64_t la_sync = 0, la_async = 0;
  const auto sync = run(false, la_sync), async = run(true, la_async);
  EXPECT_EQ(la_sync, 0u);
  EXPECT_GT(la_async, 20u);
  for (size_t i = 0; i < sync.size(); ++i) {
    EXPECT_EQ(async[i].token_ids, sync[i].token_ids) << "request " << i;
    EXPECT_EQ(async[i].logprobs, sync[i].logprobs) << "request " << i;
    EXPECT_EQ(async[i].token_ids.size(), size_t(params[i].max_tokens)) << "request " << i;
  }
  // A batch past the fused decode kernels (cuBLAS and the op-by-op step): 40 greedy requests.
  ps = prompts(40, 264, 24);
  params.assign(40, params[0]);
  for (auto& p : params) p.max_tokens = 20;
  const auto sync40 = run(false, la_sync), async40 = run(true, la_async);
  EXPECT_GT(la_async, 10u);
  for (size_t i = 0; i < sync40.size(); ++i)
    EXPECT_EQ(async40[i].token_ids, sync40[i].token_ids) << "request " << i << " of 40";
}

// vLLM's promise: sleep gives the memory back to the driver. The engine takes half of the free
// device memory for its KV cache (like gpu_memory_utilization), so what it holds is large; after
// sleep(2) the device's used memory must be back to what it was before the engine existed (the
// CUDA context, plus whatever else this process holds) + 1% of what the engine held.
TEST(EngineSleepGpu, Level2SleepLeavesTheContextPlusOnePercentOfWhatTheEngineHeld) {
  SIESTA_REQUIRE_GPU();
  auto pool = std::shared_ptr<allocator::Pool>(allocator::Pool::create({Device::cuda(0)}));
  const uint64_t context = pool->device_memory().used_bytes;
  EngineOptions o = small_options();
  o.pool = pool;
  o.kv_cache_bytes = 0;
  o.kv_cache_memory_fraction = 0.5;
  InferenceEngine e(o);
  auto s = e.stats();
  const uint64_t held = s.weights_bytes + s.kv_cache_bytes + s.buffers_bytes + s.workspace_bytes;
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 8;
  p.ignore_eos = true;
  auto ps = prompts(2, e.model_config().vocab_size, 22);
  auto before = tokens_of(e.generate(ps, p));
  const uint64_t awake = pool->device_memory().used_bytes;
  EXPECT_GE(awake, context + held) << "the engine's memory should show as used";

  e.sleep(2);
  const uint64_t asleep2 = pool->device_memory().used_bytes;
  const uint64_t allowed = context + held / 100;
  std::printf("device used: context %.3f GiB, engine held %.3f GiB (weights %.3f, kv %.3f), "
              "awake %.3f GiB, after sleep(2) %.3f GiB, allowed %.3f GiB (context + 1%%)\n",
              gib(context), gib(held), gib(s.weights_bytes), gib(s.kv_cache_bytes), gib(awake),
              gib(asleep2), gib(allowed));
  EXPECT_LE(asleep2, allowed) << "context " << context << " B, engine held " << held
                              << " B, after sleep(2) " << asleep2 << " B";

  // Level 1 the same way (weights in the host backup), then everything back and serving.
  e.wake_up();
  e.load_weights(o.model);
  EXPECT_EQ(tokens_of(e.generate(ps, p)), before);
  e.sleep(1);
  const uint64_t asleep1 = pool->device_memory().used_bytes;
  std::printf("device used after sleep(1): %.3f GiB (allowed %.3f GiB)\n", gib(asleep1),
              gib(allowed));
  EXPECT_LE(asleep1, allowed);
  e.wake_up();
  EXPECT_EQ(tokens_of(e.generate(ps, p)), before);
}
