// The engine on the CPU backend with the tiny preset (random weights written to a temp folder
// and loaded by the real loader): determinism, batching, n samples, stop conditions, streaming,
// preemption, the sleep/wake matrix, weight updates and validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "engine_fixture.hpp"
#include "siesta/allocator/error.hpp"
#include "sleep_matrix.hpp"

using namespace siesta;
using namespace siesta::infer;
using namespace siesta::infer::testing;

namespace {

EngineOptions tiny_options() { return tiny_cpu_options(); }

SamplingParams greedy(int max_tokens = 10) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

SamplingParams seeded(uint64_t seed, int max_tokens = 10) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.seed = seed;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

InferError error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InferError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an InferError";
  return InferError(ErrorKind::Internal, "none");
}

}  // namespace

// ---- generation ---------------------------------------------------------------------------

TEST(Engine, SeededGenerationIsDeterministic) {
  auto ps = prompts(3, 264, 1);
  std::vector<std::vector<int32_t>> a, b, c;
  {
    InferenceEngine e(tiny_options());
    a = tokens_of(e.generate(ps, seeded(42)));
    c = tokens_of(e.generate(ps, seeded(43)));
  }
  {
    InferenceEngine e(tiny_options());   // a fresh engine reproduces it
    b = tokens_of(e.generate(ps, seeded(42)));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c) << "another seed draws other tokens";
  for (const auto& t : a) EXPECT_EQ(t.size(), 10u);
}

TEST(Engine, BatchedGreedyEqualsOneAtATime) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(6, 264, 2);
  auto batched = tokens_of(e.generate(ps, greedy(12)));
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(tokens_of(e.generate({ps[i]}, greedy(12)))[0], batched[i]) << "prompt " << i;
}

TEST(Engine, BatchedSeededSamplingEqualsOneAtATime) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(6, 264, 3);
  auto batched = tokens_of(e.generate(ps, seeded(5, 12)));
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(tokens_of(e.generate({ps[i]}, seeded(5, 12)))[0], batched[i]) << "prompt " << i;
}

TEST(Engine, RequestsArrivingMidRunDoNotChangeOthersOutputs) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(3, 264, 4);
  auto alone = tokens_of(e.generate(ps, seeded(9, 16)));
  // Continuous batching: add the requests a few steps apart.
  std::map<RequestId, size_t> idx;
  std::vector<std::vector<int32_t>> got(3);
  for (size_t i = 0; i < ps.size(); ++i) {
    idx[e.add_request(ps[i], seeded(9, 16))] = i;
    for (int s = 0; s < 3; ++s)
      for (auto& o : e.step()) got[idx[o.id]] = o.outputs[0].token_ids;
  }
  while (e.has_unfinished())
    for (auto& o : e.step()) got[idx[o.id]] = o.outputs[0].token_ids;
  EXPECT_EQ(got, alone);
}

TEST(Engine, NSamplesShareThePromptAndSampleZeroMatchesASingleRequest) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(2, 264, 5, 13, 13);   // 13 tokens: the last prompt block is half full
  SamplingParams group = seeded(77, 8);
  group.n = 4;
  auto outs = e.generate(ps, group);
  ASSERT_EQ(outs.size(), 2u);
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_EQ(outs[i].outputs.size(), 4u);
    auto single = e.generate({ps[i]}, seeded(77, 8));
    EXPECT_EQ(outs[i].outputs[0].token_ids, single[0].outputs[0].token_ids);
    std::set<std::vector<int32_t>> distinct;
    for (const auto& c : outs[i].outputs) {
      EXPECT_EQ(c.token_ids.size(), 8u);
      distinct.insert(c.token_ids);
    }
    EXPECT_GT(distinct.size(), 1u) << "the samples of a group draw different tokens";
  }
  EXPECT_EQ(e.stats().kv_free_blocks, e.stats().kv_num_blocks) << "every block came back";
}

TEST(Engine, GreedyNSamplesAreIdenticalAndEqualTheSingleGreedyOutput) {
  // Exercises copy-on-write: each sample writes into a copy of the shared last prompt block;
  // a wrong copy would change the continuation of one sample.
  InferenceEngine e(tiny_options());
  auto ps = prompts(1, 264, 6, 13, 13);
  SamplingParams g = greedy(12);
  auto single = e.generate(ps, g)[0].outputs[0].token_ids;
  g.n = 3;
  auto out = e.generate(ps, g)[0];
  for (const auto& c : out.outputs) EXPECT_EQ(c.token_ids, single) << "sample " << c.index;
}

TEST(Engine, PreemptionWithATinyCacheGivesTheSameOutputs) {
  auto ps = prompts(8, 264, 7, 10, 30);
  SamplingParams p = seeded(3, 40);
  std::vector<std::vector<int32_t>> roomy, tight;
  {
    InferenceEngine e(tiny_options());
    roomy = tokens_of(e.generate(ps, p));
    EXPECT_EQ(e.stats().num_preemptions, 0u);
  }
  {
    EngineOptions o = tiny_options();
    o.max_model_len = 80;
    // Exactly one max_model_len sequence (10 blocks of 8) plus 6 blocks: 8 sequences growing
    // to 50..70 tokens cannot all fit, so the newest are preempted and recomputed.
    o.kv_cache_bytes = 16 * model::kv_cache_bytes(model::load_preset("tiny"), DType::F32, 1, 8);
    InferenceEngine e(o);
    EXPECT_EQ(e.stats().kv_num_blocks, 16);
    tight = tokens_of(e.generate(ps, p));
    EXPECT_GT(e.stats().num_preemptions, 0u);
  }
  EXPECT_EQ(tight, roomy);
}

TEST(Engine, LogprobsAreReportedForEverySampledToken) {
  InferenceEngine e(tiny_options());
  SamplingParams p = seeded(1, 6);
  p.logprobs = true;
  auto o = e.generate(prompts(1, 264, 8), p)[0].outputs[0];
  ASSERT_EQ(o.logprobs.size(), o.token_ids.size());
  for (float lp : o.logprobs) {
    EXPECT_LE(lp, 0.f);
    EXPECT_TRUE(std::isfinite(lp));
  }
  p.logprobs = false;
  EXPECT_TRUE(e.generate(prompts(1, 264, 8), p)[0].outputs[0].logprobs.empty());
}

// ---- stop conditions and streaming --------------------------------------------------------

TEST(Engine, MaxTokensEndsWithLength) {
  InferenceEngine e(tiny_options());
  auto o = e.generate(prompts(1, 264, 9), greedy(5))[0].outputs[0];
  EXPECT_EQ(o.token_ids.size(), 5u);
  EXPECT_EQ(o.finish_reason, FinishReason::Length);
  EXPECT_STREQ(finish_reason_name(o.finish_reason), "length");
}

TEST(Engine, StepStatsSplitTheStepAtTheForwardLaunch) {
  InferenceEngine e(tiny_options());
  EXPECT_EQ(e.stats().last_step_launch_ms, 0.0) << "no step yet";
  e.add_request(prompts(1, 264, 9)[0], greedy(3));
  for (int i = 0; i < 2; ++i) {
    e.step();
    const auto s = e.stats();
    // On the CPU backend the launch includes the forward, so it takes measurable time; it is
    // part of the step, which also samples and delivers the tokens.
    EXPECT_GT(s.last_step_launch_ms, 0.0) << "step " << i;
    EXPECT_LE(s.last_step_launch_ms, s.last_step_ms) << "step " << i;
  }
}

TEST(Engine, StopTokenEndsTheOutputAndIsKeptInTheIds) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(1, 264, 10);
  auto free_run = e.generate(ps, greedy(12))[0].outputs[0].token_ids;
  SamplingParams p = greedy(12);
  p.stop_token_ids = {free_run[4]};
  auto o = e.generate(ps, p)[0].outputs[0];
  size_t first = size_t(std::find(free_run.begin(), free_run.end(), free_run[4]) - free_run.begin());
  ASSERT_EQ(o.token_ids.size(), first + 1);
  EXPECT_EQ(o.token_ids.back(), free_run[4]);
  EXPECT_EQ(o.finish_reason, FinishReason::Stop);
  EXPECT_EQ(o.stop_reason, std::to_string(free_run[4]));
}

TEST(Engine, EosStopsUnlessIgnored) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(1, 264, 11);
  auto free_run = e.generate(ps, greedy(12))[0].outputs[0].token_ids;
  EngineOptions o = tiny_options();
  o.eos_token_ids = std::vector<int32_t>{free_run[2]};
  InferenceEngine e2(o);
  SamplingParams p = greedy(12);
  p.ignore_eos = false;
  auto out = e2.generate(ps, p)[0].outputs[0];
  EXPECT_LE(out.token_ids.size(), 3u);
  EXPECT_EQ(out.token_ids.back(), free_run[2]);
  EXPECT_EQ(out.finish_reason, FinishReason::Stop);
  EXPECT_EQ(e2.generate(ps, greedy(12))[0].outputs[0].token_ids, free_run);
}

TEST(Engine, StopStringTruncatesTextAndStreamedTextNeverRunsAhead) {
  InferenceEngine e(tiny_options());
  // Prompts of printable bytes so that outputs of a random model still decode to text.
  std::vector<int32_t> prompt;
  for (char c : std::string("the quick brown fox")) prompt.push_back(c);
  SamplingParams p = greedy(24);
  auto free_run = e.generate({prompt}, p)[0].outputs[0];
  ASSERT_GE(free_run.text.size(), 8u) << "byte tokens decode to one byte each";
  std::string stop = free_run.text.substr(5, 2);
  p.stop = {stop};
  std::string streamed;
  bool finished = false;
  e.add_request(prompt, p, [&](const TokenDelta& d) {
    EXPECT_FALSE(finished);
    streamed += d.text;
    finished = d.finished;
    if (d.finished) {
      EXPECT_EQ(d.finish_reason, FinishReason::Stop);
      EXPECT_EQ(d.stop_reason, stop);
    }
  });
  RequestOutput out;
  while (e.has_unfinished())
    for (auto& o : e.step()) out = o;
  EXPECT_TRUE(finished);
  size_t at = free_run.text.find(stop);
  EXPECT_EQ(out.outputs[0].text, free_run.text.substr(0, at));
  EXPECT_EQ(streamed, out.outputs[0].text) << "streamed deltas add up to the final text";
}

TEST(Engine, StreamingDeliversEveryTokenOnceAndEndsWithFinished) {
  InferenceEngine e(tiny_options());
  std::vector<int32_t> ids;
  int finals = 0;
  SamplingParams p = seeded(8, 9);
  p.logprobs = true;
  std::vector<float> lps;
  e.add_request(prompts(1, 264, 12)[0], p, [&](const TokenDelta& d) {
    ids.insert(ids.end(), d.token_ids.begin(), d.token_ids.end());
    lps.insert(lps.end(), d.logprobs.begin(), d.logprobs.end());
    finals += d.finished;
  });
  RequestOutput out;
  while (e.has_unfinished())
    for (auto& o : e.step()) out = o;
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(ids, out.outputs[0].token_ids);
  EXPECT_EQ(lps, out.outputs[0].logprobs);
}

TEST(Engine, AbortEndsARequestWithItsReason) {
  InferenceEngine e(tiny_options());
  FinishReason seen = FinishReason::None;
  std::string why;
  RequestId id = e.add_request(prompts(1, 264, 13)[0], greedy(50), [&](const TokenDelta& d) {
    if (d.finished) seen = d.finish_reason, why = d.stop_reason;
  });
  e.step();
  e.step();
  EXPECT_TRUE(e.abort(id, "client went away"));
  EXPECT_FALSE(e.abort(id));
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(seen, FinishReason::Abort);
  EXPECT_EQ(why, "client went away");
  auto outs = e.step();
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].outputs[0].finish_reason, FinishReason::Abort);
  EXPECT_EQ(outs[0].outputs[0].token_ids.size(), 2u);
  EXPECT_EQ(e.stats().kv_free_blocks, e.stats().kv_num_blocks);
}

// ---- validation -----------------------------------------------------------------------------

TEST(Engine, RequestValidationNamesWhatIsWrong) {
  InferenceEngine e(tiny_options());
  SamplingParams p;
  p.top_p = 1.5f;
  auto err = error_of([&] { e.add_request({1, 2, 3}, p); });
  EXPECT_EQ(err.kind(), ErrorKind::InvalidArgument);
  EXPECT_NE(std::string(err.what()).find("top_p"), std::string::npos);
  err = error_of([&] { e.add_request({}, greedy()); });
  EXPECT_NE(std::string(err.what()).find("empty"), std::string::npos);
  err = error_of([&] { e.add_request({1, 999}, greedy()); });
  EXPECT_NE(std::string(err.what()).find("0 <= id < 264"), std::string::npos) << err.what();
  err = error_of([&] { e.add_request(std::vector<int32_t>(200, 1), greedy()); });
  EXPECT_NE(std::string(err.what()).find("max_model_len"), std::string::npos) << err.what();
  SamplingParams big = greedy();
  big.n = 17;
  err = error_of([&] { e.add_request({1}, big); });
  EXPECT_NE(std::string(err.what()).find("max_num_seqs"), std::string::npos) << err.what();
  EXPECT_FALSE(e.has_unfinished());
}

TEST(Engine, OptionValidationNamesTheOption) {
  EngineOptions o = tiny_options();
  o.max_model_len = 100000;
  auto err = error_of([&] { InferenceEngine e(o); });
  EXPECT_NE(std::string(err.what()).find("max_model_len"), std::string::npos) << err.what();
  o = tiny_options();
  o.kv_cache_bytes = 1024;
  err = error_of([&] { InferenceEngine e(o); });
  EXPECT_NE(std::string(err.what()).find("kv_cache_bytes"), std::string::npos) << err.what();
  o = tiny_options();
  o.model = "no_such_preset_or_folder";
  err = error_of([&] { InferenceEngine e(o); });
  EXPECT_EQ(err.kind(), ErrorKind::InvalidArgument);
}

// ---- sleep mode -----------------------------------------------------------------------------

TEST(EngineSleep, Level1ThenWakeAllGivesIdenticalOutputs) {
  check_level1_wake_all_is_identical(tiny_options());
}

TEST(EngineSleep, Level2WakeWeightsUpdateSameWeightsWakeKvGivesIdenticalOutputs) {
  check_level2_update_then_wake_kv_is_identical(tiny_options());
}

TEST(EngineSleep, Level2WithoutNewWeightsRefusesWithAClearError) {
  check_level2_without_update_refuses(tiny_options());
}

TEST(EngineSleep, IsSleepingUntilEveryTagIsAwake) { check_is_sleeping_truth_table(tiny_options()); }

TEST(EngineSleep, PartialUpdateAfterLevel2StillRefuses) {
  InferenceEngine e(tiny_options());
  e.sleep(2);
  e.wake_up();
  auto folder = model::load_model_folder(tiny_options().model);
  auto all = folder_weights(folder, e);
  e.update_weights({all.begin(), all.begin() + 3});
  auto err = error_of([&] { e.add_request({1, 2}, greedy()); });
  EXPECT_EQ(err.kind(), ErrorKind::WeightsNotLoaded);
  EXPECT_NE(std::string(err.what()).find(std::to_string(all.size() - 3) + " of " +
                                         std::to_string(all.size())),
            std::string::npos)
      << err.what();
  e.update_weights({all.begin() + 3, all.end()});
  EXPECT_TRUE(e.sleep_state().weights_valid);
}

TEST(EngineSleep, RequestsWhileAsleepAreRefused) {
  InferenceEngine e(tiny_options());
  e.sleep(1);
  auto err = error_of([&] { e.add_request({1, 2}, greedy()); });
  EXPECT_EQ(err.kind(), ErrorKind::Sleeping);
  e.wake_up({"weights"});
  err = error_of([&] { e.add_request({1, 2}, greedy()); });
  EXPECT_EQ(err.kind(), ErrorKind::Sleeping);
  EXPECT_NE(std::string(err.what()).find("kv_cache"), std::string::npos) << err.what();
}

TEST(EngineSleep, SleepDrainsRunningRequestsByDefault) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(3, 264, 14);
  auto expected = tokens_of(e.generate(ps, greedy(8)));
  for (auto& p : ps) e.add_request(p, greedy(8));
  e.step();
  e.sleep(1);
  EXPECT_FALSE(e.has_unfinished());
  auto outs = e.step();   // the drained outputs are handed out by the next step()
  ASSERT_EQ(outs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outs[i].outputs[0].finish_reason, FinishReason::Length);
    EXPECT_EQ(outs[i].outputs[0].token_ids, expected[i]);
  }
}

TEST(EngineSleep, SleepWithAbortReportsTheReason) {
  InferenceEngine e(tiny_options());
  std::vector<std::string> reasons;
  for (auto& p : prompts(2, 264, 15))
    e.add_request(p, greedy(30), [&](const TokenDelta& d) {
      if (d.finished) reasons.push_back(d.stop_reason);
    });
  e.step();
  e.sleep(2, SleepPolicy::Abort);
  EXPECT_TRUE(e.is_sleeping());
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0], "engine sleep (level 2)");
  for (auto& o : e.step()) EXPECT_EQ(o.outputs[0].finish_reason, FinishReason::Abort);
}

TEST(EngineSleep, KvCacheIsEmptyAfterWake) {
  InferenceEngine e(tiny_options());
  e.sleep(1);
  e.wake_up();
  EXPECT_EQ(e.stats().kv_free_blocks, e.stats().kv_num_blocks);
  EXPECT_TRUE(e.reset_prefix_cache());
}

TEST(EngineSleep, SleepMovesMemoryOutOfThePool) {
  InferenceEngine e(tiny_options());
  auto mapped = [&](const std::string& tag) {
    for (const auto& t : e.pool().stats().tags)
      if (t.tag == tag) return t;
    return allocator::TagStats{};
  };
  EXPECT_GT(mapped("weights").mapped_bytes, 0u);
  e.sleep(1);
  EXPECT_EQ(mapped("weights").mapped_bytes, 0u);
  EXPECT_GE(mapped("weights").backed_up_bytes, e.stats().weights_bytes);
  EXPECT_EQ(mapped("kv_cache").mapped_bytes, 0u);
  EXPECT_EQ(mapped("kv_cache").backed_up_bytes, 0u);
  e.wake_up();
  e.sleep(2);
  EXPECT_EQ(mapped("weights").backed_up_bytes, 0u) << "level 2 discards the weights";
  EXPECT_GT(mapped("buffers").backed_up_bytes, 0u) << "level 2 keeps the rope table on the host";
  e.wake_up({"weights"});
  EXPECT_GT(mapped("weights").mapped_bytes, 0u);
  EXPECT_EQ(mapped("kv_cache").mapped_bytes, 0u);
}

TEST(EngineSleep, AFailedWakeLeavesTheEngineAsleepAndRecoverable) {
  // The engine and a "trainer" share a pool with a budget: while the engine sleeps the trainer
  // takes the memory, so the wake cannot fit until the trainer gives it back.
  allocator::PoolOptions po;
  po.device = Device::cpu();
  EngineOptions o = tiny_options();
  uint64_t engine_bytes;
  {
    InferenceEngine probe(o);
    auto s = probe.stats();
    engine_bytes = s.weights_bytes + s.kv_cache_bytes + s.buffers_bytes + s.workspace_bytes;
  }
  po.capacity_bytes = engine_bytes + (64 << 10);   // page rounding of 4 allocations
  o.pool = std::shared_ptr<allocator::Pool>(allocator::Pool::create(po));
  InferenceEngine e(o);
  auto ps = prompts(2, 264, 16);
  auto before = tokens_of(e.generate(ps, seeded(4)));
  e.sleep(1);
  auto trainer = o.pool->allocate(engine_bytes, "train_params", "trainer.params");
  auto err = error_of([&] { e.wake_up(); });
  EXPECT_EQ(err.kind(), ErrorKind::OutOfMemory);
  EXPECT_TRUE(e.is_sleeping());
  EXPECT_FALSE(e.sleep_state().weights_awake);
  o.pool->free(trainer);
  e.wake_up();
  EXPECT_FALSE(e.is_sleeping());
  EXPECT_EQ(tokens_of(e.generate(ps, seeded(4))), before);
}

TEST(EngineSleep, SleepLevelAndWakeTagsAreValidated) {
  InferenceEngine e(tiny_options());
  EXPECT_EQ(error_of([&] { e.sleep(3); }).kind(), ErrorKind::InvalidArgument);
  e.sleep(1);
  auto err = error_of([&] { e.wake_up({"activations"}); });
  EXPECT_NE(std::string(err.what()).find("allowed: weights, kv_cache"), std::string::npos);
  EXPECT_TRUE(e.is_sleeping());
}

// ---- weights --------------------------------------------------------------------------------

TEST(EngineWeights, UpdateWeightsWritesInPlaceAndChangesOutputs) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(2, 264, 17);
  auto before = tokens_of(e.generate(ps, greedy()));
  const std::string name = "lm_head.weight";
  auto infos = e.weight_infos();
  auto it = std::find_if(infos.begin(), infos.end(), [&](auto& w) { return w.name == name; });
  ASSERT_NE(it, infos.end());
  std::vector<float> fresh(size_t(numel(it->shape)));
  for (size_t i = 0; i < fresh.size(); ++i) fresh[i] = float((i * 2654435761u) % 1000) / 1000.f;
  e.update_weights({{name, TensorView{fresh.data(), DType::F32, it->shape, Device::cpu()}}});
  auto back = e.read_weight(name);
  ASSERT_EQ(back.size(), fresh.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(back.data(), fresh.data(), back.size()), 0);
  EXPECT_NE(tokens_of(e.generate(ps, greedy())), before);
  // Putting the old weights back restores the outputs.
  auto folder = model::load_model_folder(tiny_options().model);
  e.update_weights(folder_weights(folder, e));
  EXPECT_EQ(tokens_of(e.generate(ps, greedy())), before);
}

TEST(EngineWeights, UpdateWeightsValidatesBeforeWriting) {
  InferenceEngine e(tiny_options());
  auto infos = e.weight_infos();
  const auto& w = infos[0];
  auto original = e.read_weight(w.name);
  std::vector<float> buf(size_t(numel(w.shape)) + 64, 0.5f);
  std::vector<int32_t> ibuf(buf.size());
  auto good = TensorView{buf.data(), DType::F32, w.shape, Device::cpu()};
  auto err = error_of([&] { e.update_weights({{w.name, good}, {"model.nope.weight", good}}); });
  EXPECT_NE(std::string(err.what()).find("'model.nope.weight' is not a parameter"),
            std::string::npos)
      << err.what();
  Shape wrong = w.shape;
  wrong[0] += 1;
  err = error_of([&] {
    e.update_weights({{w.name, TensorView{buf.data(), DType::F32, wrong, Device::cpu()}}});
  });
  EXPECT_NE(std::string(err.what()).find("has shape"), std::string::npos) << err.what();
  err = error_of([&] {
    e.update_weights({{w.name, TensorView{ibuf.data(), DType::I32, w.shape, Device::cpu()}}});
  });
  EXPECT_NE(std::string(err.what()).find("allowed: F32, BF16, F16"), std::string::npos);
  err = error_of([&] { e.update_weights({{w.name, good}, {w.name, good}}); });
  EXPECT_NE(std::string(err.what()).find("more than once"), std::string::npos);
  EXPECT_EQ(e.read_weight(w.name), original) << "a rejected update writes nothing";
  e.sleep(1);
  EXPECT_EQ(error_of([&] { e.update_weights({{w.name, good}}); }).kind(), ErrorKind::Sleeping);
}

TEST(EngineWeights, Bf16UpdatesAreConvertedToTheEngineDtype) {
  InferenceEngine e(tiny_options());
  auto ps = prompts(2, 264, 18);
  auto bf16_dir = model_dir("tiny", DType::BF16);
  auto folder = model::load_model_folder(bf16_dir);
  e.update_weights(folder_weights(folder, e));
  // The same model rounded to bf16, loaded by another engine from the bf16 folder.
  EngineOptions o = tiny_options();
  o.model = bf16_dir.string();
  InferenceEngine ref(o);
  EXPECT_EQ(tokens_of(e.generate(ps, greedy())), tokens_of(ref.generate(ps, greedy())));
}

TEST(EngineWeights, LoadWeightsRejectsAnotherModel) {
  InferenceEngine e(tiny_options());
  auto err = error_of([&] { e.load_weights(model_dir("mini")); });
  EXPECT_EQ(err.kind(), ErrorKind::InvalidArgument);
  EXPECT_NE(std::string(err.what()).find("different model"), std::string::npos) << err.what();
}
