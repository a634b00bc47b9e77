// Async scheduling (EngineOptions::async_scheduling) on the CPU backend, tiny preset: a decode
// step queued before the step in front of it had its tokens read, its input tokens taken from
// that step's draw. Pinned here: the outputs are those of one step at a time, whatever stops,
// aborts or sleeps while a step is queued ahead.
#include <gtest/gtest.h>

#include "engine_fixture.hpp"
#include "sleep_matrix.hpp"

using namespace siesta;
using namespace siesta::infer;
using namespace siesta::infer::testing;

namespace {

EngineOptions options(bool async_scheduling) {
  EngineOptions o = tiny_cpu_options();
  o.async_scheduling = async_scheduling;
  return o;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.logprobs = true;
  return p;
}

// Requests that stop at different steps and in different ways, all added up front.
struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
};

Workload mixed_workload(const std::vector<int32_t>& stop_tokens) {
  Workload w;
  w.prompts = prompts(6, 264, 41);
  w.params.push_back(greedy(17));
  w.params.push_back(greedy(5));
  SamplingParams t = greedy(14);  // temperature without top_k / top_p: drawn on the device
  t.temperature = 0.8f;
  t.seed = 7;
  w.params.push_back(t);
  SamplingParams n2 = t;  // two samples: a fork after the prompt, then both decode
  n2.n = 2;
  n2.seed = 11;
  n2.max_tokens = 12;
  w.params.push_back(n2);
  SamplingParams stop = greedy(20);
  stop.stop_token_ids = stop_tokens;
  w.params.push_back(stop);
  SamplingParams eos = greedy(20);
  eos.ignore_eos = false;
  w.params.push_back(eos);
  return w;
}

struct Outcome {
  std::vector<RequestOutput> outputs;
  EngineStats stats;
};

Outcome run(bool async_scheduling, const Workload& w, std::vector<int32_t> eos) {
  EngineOptions o = options(async_scheduling);
  o.eos_token_ids = std::move(eos);
  InferenceEngine e(o);
  std::vector<RequestId> ids;
  for (size_t i = 0; i < w.prompts.size(); ++i)
    ids.push_back(e.add_request(w.prompts[i], w.params[i]));
  std::map<RequestId, RequestOutput> done;
  while (e.has_unfinished())
    for (auto& out : e.step()) done[out.id] = std::move(out);
  Outcome r;
  for (RequestId id : ids) r.outputs.push_back(done.at(id));
  r.stats = e.stats();
  return r;
}

void expect_same_outputs(const Outcome& a, const Outcome& b) {
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    ASSERT_EQ(a.outputs[i].outputs.size(), b.outputs[i].outputs.size()) << "request " << i;
    for (size_t j = 0; j < a.outputs[i].outputs.size(); ++j) {
      const CompletionOutput &x = a.outputs[i].outputs[j], &y = b.outputs[i].outputs[j];
      EXPECT_EQ(x.token_ids, y.token_ids) << "request " << i << " sample " << j;
      EXPECT_EQ(x.logprobs, y.logprobs) << "request " << i << " sample " << j;
      EXPECT_EQ(x.text, y.text) << "request " << i << " sample " << j;
      EXPECT_EQ(x.finish_reason, y.finish_reason) << "request " << i << " sample " << j;
      EXPECT_EQ(x.stop_reason, y.stop_reason) << "request " << i << " sample " << j;
    }
  }
}

TEST(AsyncScheduling, GivesTheOutputsOfOneStepAtATime) {
  // Stop and eos tokens taken from a free run, so that requests stop mid-generation.
  InferenceEngine probe(options(false));
  const auto free_run = probe.generate(prompts(6, 264, 41), greedy(20));
  const std::vector<int32_t> stop_tokens = {free_run[4].outputs[0].token_ids[6]};
  const std::vector<int32_t> eos = {free_run[5].outputs[0].token_ids[3]};
  const Workload w = mixed_workload(stop_tokens);

  const Outcome sync = run(false, w, eos), async = run(true, w, eos);
  expect_same_outputs(sync, async);
  EXPECT_EQ(sync.stats.num_lookahead_steps, 0u);
  EXPECT_GT(async.stats.num_lookahead_steps, 5u) << "the lookahead path must have run";
  EXPECT_EQ(async.stats.generation_tokens_total, sync.stats.generation_tokens_total);
  EXPECT_EQ(async.stats.prompt_tokens_total, sync.stats.prompt_tokens_total);
  // The ways these requests end, as the test means them to.
  EXPECT_EQ(async.outputs[1].outputs[0].finish_reason, FinishReason::Length);
  EXPECT_EQ(async.outputs[4].outputs[0].finish_reason, FinishReason::Stop);
  EXPECT_LE(async.outputs[4].outputs[0].token_ids.size(), 7u);
  EXPECT_EQ(async.outputs[5].outputs[0].finish_reason, FinishReason::Stop);
  EXPECT_LE(async.outputs[5].outputs[0].token_ids.size(), 4u);
}

TEST(AsyncScheduling, TopKAndTopPRowsRunOneStepAtATime) {
  InferenceEngine e(options(true));
  SamplingParams p = greedy(8);
  p.temperature = 1.f;
  p.top_k = 20;
  p.seed = 3;
  e.generate(prompts(2, 264, 42), p);
  EXPECT_EQ(e.stats().num_lookahead_steps, 0u) << "their draw needs the host";
  e.generate(prompts(2, 264, 42), greedy(8));
  EXPECT_GT(e.stats().num_lookahead_steps, 0u);
}

TEST(AsyncScheduling, AbortWhileAStepIsQueuedAheadKeepsTheTokensReadSoFar) {
  const auto ps = prompts(2, 264, 43);
  InferenceEngine ref(options(false));
  const auto full = ref.generate(ps, greedy(30));

  InferenceEngine e(options(true));
  const RequestId a = e.add_request(ps[0], greedy(30));
  const RequestId b = e.add_request(ps[1], greedy(30));
  for (int i = 0; i < 6; ++i) e.step();
  ASSERT_GT(e.stats().num_lookahead_steps, 0u);
  EXPECT_TRUE(e.abort(a, "test abort"));
  std::map<RequestId, RequestOutput> done;
  for (auto& out : e.step()) done[out.id] = std::move(out);
  while (e.has_unfinished())
    for (auto& out : e.step()) done[out.id] = std::move(out);
  const CompletionOutput& aborted = done.at(a).outputs[0];
  EXPECT_EQ(aborted.finish_reason, FinishReason::Abort);
  EXPECT_EQ(aborted.stop_reason, "test abort");
  // Six steps read: the prompt's token and five decode steps, a prefix of the full run.
  ASSERT_EQ(aborted.token_ids.size(), 6u);
  EXPECT_TRUE(std::equal(aborted.token_ids.begin(), aborted.token_ids.end(),
                         full[0].outputs[0].token_ids.begin()));
  EXPECT_EQ(done.at(b).outputs[0].token_ids, full[1].outputs[0].token_ids);
  // The engine goes on: a new request after everything settled.
  EXPECT_EQ(e.generate({ps[0]}, greedy(30))[0].outputs[0].token_ids,
            full[0].outputs[0].token_ids);
}

TEST(AsyncScheduling, SleepSettlesTheStepQueuedAhead) {
  const auto ps = prompts(1, 264, 44);
  InferenceEngine ref(options(false));
  const auto full = ref.generate(ps, greedy(25))[0].outputs[0].token_ids;

  for (SleepPolicy policy : {SleepPolicy::Drain, SleepPolicy::Abort}) {
    InferenceEngine e(options(true));
    const RequestId id = e.add_request(ps[0], greedy(25));
    for (int i = 0; i < 5; ++i) e.step();
    ASSERT_GT(e.stats().num_lookahead_steps, 0u);
    e.sleep(1, policy);
    EXPECT_FALSE(e.has_unfinished());
    auto outs = e.step();   // what finished while going to sleep
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].id, id);
    const auto& got = outs[0].outputs[0].token_ids;
    if (policy == SleepPolicy::Drain) {
      EXPECT_EQ(got, full);
    } else {
      ASSERT_EQ(got.size(), 5u);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), full.begin()));
    }
    e.wake_up();
    EXPECT_EQ(e.generate(ps, greedy(25))[0].outputs[0].token_ids, full);
  }
}

// A weight update (here the same weights again) while a step is queued ahead completes that
// step first: the outputs are those of the uninterrupted run, and the update goes through.
TEST(AsyncScheduling, WeightUpdateSettlesTheStepQueuedAhead) {
  const auto ps = prompts(2, 264, 45);
  InferenceEngine ref(options(false));
  const auto full = ref.generate(ps, greedy(20));

  InferenceEngine e(options(true));
  const auto folder = model::load_model_folder(tiny_cpu_options().model);
  std::vector<RequestId> ids;
  for (const auto& p : ps) ids.push_back(e.add_request(p, greedy(20)));
  for (int i = 0; i < 4; ++i) e.step();
  ASSERT_GT(e.stats().num_lookahead_steps, 0u);
  const uint64_t completed = e.stats().num_steps;
  e.update_weights(folder_weights(folder, e));
  EXPECT_EQ(e.stats().num_steps, completed + 1) << "the queued step completed before the update";
  std::map<RequestId, RequestOutput> done;
  while (e.has_unfinished())
    for (auto& out : e.step()) done[out.id] = std::move(out);
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_EQ(done.at(ids[i]).outputs[0].token_ids, full[i].outputs[0].token_ids) << i;
}

}  // namespace
