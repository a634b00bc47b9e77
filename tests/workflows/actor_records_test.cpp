// The coordinator's records (actors::StepRecord / EvalRecord) become the run folder's records
// with nothing lost: what metrics.jsonl, the progress line and the report are built from.
#include <gtest/gtest.h>

#include "siesta/workflows/actor_records.hpp"
#include "siesta/workflows/progress.hpp"

using namespace siesta;
using namespace siesta::workflows;

TEST(ActorRecords, GrpoStepKeepsPhasesMemoryAndFigures) {
  actors::StepRecord a;
  a.step = 12;
  a.stage = "grpo";
  a.phase_ms = {{"rollout", 300.0}, {"sleep", 5.0}, {"train", 150.0}, {"sync", 20.0}};
  a.phase_memory = {{900u << 20, 600u << 20}, {300u << 20, 0}, {700u << 20, 0}, {800u << 20, 500u << 20}};
  a.step_ms = 500.0;
  a.reward_mean = 0.625;
  a.loss = -0.05;
  a.grad_norm = 1.5;
  a.lr = 1e-4;
  a.generated_tokens = 400;
  a.trained_tokens = 600;
  a.device_used_peak = 900u << 20;
  a.engine_held_while_training = 0;
  a.sync_gbps = 42.0;
  StepRecord r = step_record_from(a);
  EXPECT_EQ(r.step, 12);
  EXPECT_EQ(r.stage, "grpo");
  ASSERT_EQ(r.phases.size(), 4u);
  EXPECT_EQ(r.phases[2].phase, "train");
  EXPECT_DOUBLE_EQ(r.phases[2].ms, 150.0);
  ASSERT_EQ(r.memory.size(), 4u);
  EXPECT_EQ(r.memory[0].phase, "rollout");
  EXPECT_EQ(r.memory[0].engine_bytes, 600u << 20);
  EXPECT_EQ(r.memory[2].used_bytes, 700u << 20);
  EXPECT_DOUBLE_EQ(*r.reward, 0.625);
  EXPECT_DOUBLE_EQ(*r.loss, -0.05);
  EXPECT_DOUBLE_EQ(r.total_ms(), 500.0);
  EXPECT_DOUBLE_EQ(r.tokens_per_s, 2000.0);  // 1000 tokens in 0.5 s
  EXPECT_EQ(r.peak_used_bytes(), 900u << 20);
  EXPECT_EQ(r.engine_bytes_during_train(), 0u) << "the engine slept through train";
  EXPECT_DOUBLE_EQ(r.sync_gbps, 42.0);
  EXPECT_EQ(r.trained_tokens, 600);
  // The same figures survive metrics.jsonl.
  auto back = StepRecord::from_json(r.to_json());
  EXPECT_EQ(back.to_json(), r.to_json());
  auto ps = ProgressState::of(r, 100);
  EXPECT_EQ(ps.device_used_bytes, 900u << 20);
  EXPECT_DOUBLE_EQ(ps.tokens_per_s, 2000.0);
}

TEST(ActorRecords, SftStepHasNoRewardAndMayLackPhaseMemory) {
  actors::StepRecord a;
  a.step = 3;
  a.stage = "sft";
  a.phase_ms = {{"train", 80.0}};
  a.loss = 1.25;
  a.reward_mean = 0;  // not a rollout reward
  StepRecord r = step_record_from(a);
  EXPECT_FALSE(r.reward.has_value());
  EXPECT_DOUBLE_EQ(*r.loss, 1.25);
  EXPECT_TRUE(r.memory.empty());
  EXPECT_DOUBLE_EQ(r.total_ms(), 80.0) << "no step_ms: the sum of the phases";
}

TEST(ActorRecords, EvalRecordBecomesAnEvalPoint) {
  actors::EvalRecord e;
  e.step = 40;
  e.reward_mean = 0.75;
  e.exact_match = 0.5;
  e.prompts = 64;
  e.samples = {{"sort(21)=", "12"}};
  EvalPoint p = eval_point_from(e);
  EXPECT_EQ(p.step, 40);
  EXPECT_DOUBLE_EQ(p.reward, 0.75);
  EXPECT_DOUBLE_EQ(*p.exact_match, 0.5);
  EXPECT_EQ(p.prompts, 64);
}
