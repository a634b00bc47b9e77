// --set path=value overrides: applied after the file, validated like the file, and errors
// name the override itself.
#include <gtest/gtest.h>

#include "siesta/workflows.hpp"

using namespace siesta::workflows;

namespace {

// The diagnostics of a workflow that must not validate.
std::vector<Diagnostic> errors_of(const std::string& yaml, const std::vector<std::string>& sets) {
  try {
    load_workflow_text(yaml, "w.yaml", sets);
  } catch (const ValidationError& e) {
    return e.diagnostics();
  }
  ADD_FAILURE() << "validated";
  return {};
}

}  // namespace

TEST(WorkflowOverrides, SetReplacesScalarsAfterTheFile) {
  auto s = resolve_default(false, {"trainer.lr=1e-4", "engine.sleep_level.train=1",
                                   "name=tuned", "outputs.trace=false",
                                   "engine.kv_cache_bytes=256MiB", "trainer.betas=[0.8, 0.9]"});
  EXPECT_DOUBLE_EQ(s.trainer.lr, 1e-4);
  EXPECT_EQ(s.engine.sleep_level.train, 1);
  EXPECT_EQ(s.name, "tuned");
  EXPECT_FALSE(s.outputs.trace);
  EXPECT_EQ(s.engine.kv_cache_bytes, 256ull << 20);
  EXPECT_DOUBLE_EQ(s.trainer.betas[0], 0.8);
}

TEST(WorkflowOverrides, LaterOverrideWins) {
  auto s = resolve_default(false, {"trainer.lr=1e-4", "trainer.lr=2e-4"});
  EXPECT_DOUBLE_EQ(s.trainer.lr, 2e-4);
}

TEST(WorkflowOverrides, StageFieldsByIndexInBothSpellings) {
  auto s = resolve_default(false, {"algorithm.stages[1].steps=5", "algorithm.stages.0.steps=3",
                                   "algorithm.stages[1].group_size=4"});
  EXPECT_EQ(stage_steps(s.stages[0]), 3);
  EXPECT_EQ(std::get<GrpoStage>(s.stages[1]).steps, 5);
  EXPECT_EQ(std::get<GrpoStage>(s.stages[1]).group_size, 4);
  // The untouched fields of the edited stage keep the file's values.
  auto file = resolve_default(false);
  EXPECT_EQ(std::get<GrpoStage>(s.stages[1]).prompts_per_step,
            std::get<GrpoStage>(file.stages[1]).prompts_per_step);
}

TEST(WorkflowOverrides, StageListCanBeReplacedWhole) {
  auto s = resolve_default(false, {"algorithm.stages=[{type: grpo, steps: 2}]"});
  ASSERT_EQ(s.stages.size(), 1u);
  EXPECT_EQ(std::get<GrpoStage>(s.stages[0]).steps, 2);
}

TEST(WorkflowOverrides, StageTypeChangeStartsFromThatTypesDefaults) {
  auto s = resolve_default(false, {"algorithm.stages[0].type=eval"});
  EXPECT_EQ(stage_type(s.stages[0]), StageType::Eval);
  EXPECT_EQ(stage_steps(s.stages[0]), EvalStage{}.steps);
}

TEST(WorkflowOverrides, BadValueNamesTheOverride) {
  auto ds = errors_of("", {"trainer.lr=abc"});
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].to_string(),
            "--set trainer.lr=abc: error: trainer.lr: expected a number, found 'abc' (allowed: (0, 1])");
}

TEST(WorkflowOverrides, UnknownPathSuggestsTheRealOne) {
  auto ds = errors_of("", {"trainer.lrr=1e-4"});
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].origin, "--set trainer.lrr=1e-4");
  EXPECT_NE(ds[0].message.find("did you mean 'lr'?"), std::string::npos) << ds[0].to_string();
  auto top = errors_of("", {"traner.lr=1e-4"});
  ASSERT_EQ(top.size(), 1u);
  EXPECT_NE(top[0].message.find("did you mean 'trainer'?"), std::string::npos) << top[0].to_string();
}

TEST(WorkflowOverrides, OutOfRangeAndMalformedOverridesAreAllReported) {
  auto ds = errors_of("", {"engine.sleep_level.eval=3", "no-equals-sign", "algorithm.stages[9].steps=1",
                           "trainer..lr=1", "trainer.lr=[1"});
  ASSERT_EQ(ds.size(), 5u);
  EXPECT_NE(ds[0].to_string().find("--set engine.sleep_level.eval=3: error: engine.sleep_level.eval: 3 is not allowed (allowed: 1, 2)"),
            std::string::npos) << ds[0].to_string();
  EXPECT_NE(ds[1].to_string().find("--set path.to.key=value"), std::string::npos) << ds[1].to_string();
  EXPECT_NE(ds[2].to_string().find("algorithm.stages[9]: no such stage; the workflow has 3 stages (allowed: 0..2)"),
            std::string::npos) << ds[2].to_string();
  EXPECT_NE(ds[3].message.find("empty key"), std::string::npos);
  EXPECT_NE(ds[4].message.find("not valid YAML"), std::string::npos);
}

TEST(WorkflowOverrides, ConsistencyErrorPointsAtTheOverrideThatBrokeIt) {
  // The file sizes the KV cache in bytes; the override adds a memory fraction.
  auto ds = errors_of("devices: {device: cuda}\nengine:\n  kv_cache_bytes: 1GiB\n",
                      {"engine.gpu_memory_utilization=0.5"});
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].origin, "--set engine.gpu_memory_utilization=0.5");
  EXPECT_EQ(ds[0].path, "engine.gpu_memory_utilization");
  // ...and setting the bytes back to null through an override makes it valid.
  auto s = load_workflow_text("devices: {device: cuda}\nengine:\n  kv_cache_bytes: 1GiB\n", "w.yaml",
                              {"engine.gpu_memory_utilization=0.5", "engine.kv_cache_bytes=null"});
  EXPECT_FALSE(s.engine.kv_cache_bytes.has_value());
  EXPECT_DOUBLE_EQ(*s.engine.gpu_memory_utilization, 0.5);
}

TEST(WorkflowOverrides, FileErrorsComeBeforeOverrideErrors) {
  auto ds = errors_of("trainer:\n  lr: 7\n", {"engine.max_batch=0"});
  ASSERT_EQ(ds.size(), 2u);
  EXPECT_EQ(ds[0].origin, "w.yaml");
  EXPECT_EQ(ds[0].line, 2);
  EXPECT_EQ(ds[1].origin, "--set engine.max_batch=0");
}
