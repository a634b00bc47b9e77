// Valid workflows parse with every default filled; the built-in defaults validate and
// round-trip through to_yaml; the README reference is the one generated from the schema.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "siesta/workflows.hpp"

namespace fs = std::filesystem;
using namespace siesta::workflows;

namespace {

fs::path configs() { return fs::path(SIESTA_SOURCE_DIR) / "configs/workflows"; }

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Equality through the canonical text form: every field appears in to_yaml.
void expect_same(const WorkflowSpec& a, const WorkflowSpec& b) {
  EXPECT_EQ(to_yaml(a, false), to_yaml(b, false));
}

}  // namespace

TEST(WorkflowSchema, EmptyDocumentGivesEveryDefault) {
  auto spec = load_workflow_text("", "<empty>");
  WorkflowSpec defaults;
  expect_same(spec, defaults);
  EXPECT_EQ(spec.model, "mini");
  EXPECT_EQ(spec.trainer.lr, 1e-3);
  EXPECT_EQ(spec.engine.sleep_level.train, 2);
  EXPECT_FALSE(spec.engine.kv_cache_bytes.has_value());
  ASSERT_EQ(spec.stages.size(), 3u);
}

TEST(WorkflowSchema, PartialFileKeepsDefaultsForMissingKeys) {
  auto spec = load_workflow_text(
      "name: partial\n"
      "engine:\n  kv_cache_bytes: 512MiB\n  sleep_level: {train: 1}\n"
      "trainer: {lr: 3e-4, betas: [0.8, 0.99]}\n"
      "algorithm:\n  stages:\n    - {type: grpo, steps: 7, group_size: 4}\n    - {type: eval}\n",
      "<partial>");
  EXPECT_EQ(spec.name, "partial");
  EXPECT_EQ(spec.engine.kv_cache_bytes, 512ull << 20);
  EXPECT_EQ(spec.engine.sleep_level.train, 1);
  EXPECT_EQ(spec.engine.sleep_level.eval, SleepLevels{}.eval);
  EXPECT_EQ(spec.engine.max_batch, EngineSpec{}.max_batch);
  EXPECT_DOUBLE_EQ(spec.trainer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(spec.trainer.betas[1], 0.99);
  EXPECT_EQ(spec.trainer.micro_batch, TrainerSpec{}.micro_batch);
  ASSERT_EQ(spec.stages.size(), 2u);
  const auto& g = std::get<GrpoStage>(spec.stages[0]);
  EXPECT_EQ(g.steps, 7);
  EXPECT_EQ(g.group_size, 4);
  EXPECT_EQ(g.prompts_per_step, GrpoStage{}.prompts_per_step);
  EXPECT_EQ(stage_type(spec.stages[1]), StageType::Eval);
  EXPECT_EQ(std::get<EvalStage>(spec.stages[1]).temperature, 0.0);
  EXPECT_EQ(total_steps(spec), 8);
}

TEST(WorkflowSchema, ShippedConfigsValidate) {
  for (const char* name : {"default-cpu.yaml", "grpo-small-gpu.yaml", "grpo-2gpu.yaml", "grpo-4gpu.yaml"}) {
    SCOPED_TRACE(name);
    WorkflowSpec s;
    ASSERT_NO_THROW(s = load_workflow(configs() / name));
    EXPECT_EQ(s.name + ".yaml", name);
  }
  auto gpu = load_workflow(configs() / "grpo-small-gpu.yaml");
  EXPECT_EQ(gpu.model, "small");
  EXPECT_EQ(gpu.devices.device, Device::Cuda);
  int grpo_steps = 0;
  for (const auto& st : gpu.stages)
    if (stage_type(st) == StageType::Grpo) grpo_steps += stage_steps(st);
  EXPECT_GE(grpo_steps, 50);
  auto two = load_workflow(configs() / "grpo-2gpu.yaml");
  EXPECT_EQ(two.devices.gpus, 2);
  EXPECT_EQ(two.devices.workers_per_node, 2);
  EXPECT_EQ(two.devices.transport, Transport::Nccl);
  auto four = load_workflow(configs() / "grpo-4gpu.yaml");
  EXPECT_EQ(four.devices.gpus, 4);
  EXPECT_EQ(four.devices.workers_per_node, 4);
}

TEST(WorkflowSchema, BuiltInDefaultIsTheCpuConfigFile) {
  EXPECT_EQ(default_workflow_yaml(false), slurp(configs() / "default-cpu.yaml"));
  EXPECT_EQ(default_workflow_yaml(true), slurp(configs() / "grpo-small-gpu.yaml"));
  auto cpu = resolve_default(false);
  EXPECT_EQ(cpu.devices.device, Device::Cpu);
  EXPECT_EQ(cpu.model, "tiny");
  // SFT warm-up, then GRPO on sorting (bench/train/grpo_demo's settings): the shape that
  // shows reward rising on a CPU.
  ASSERT_GE(cpu.stages.size(), 2u);
  EXPECT_EQ(stage_type(cpu.stages[0]), StageType::Sft);
  EXPECT_EQ(stage_type(cpu.stages[1]), StageType::Grpo);
  EXPECT_EQ(cpu.task.name, TaskKind::Sorting);
  auto gpu = resolve_default(true);
  EXPECT_EQ(gpu.model, "small");
}

TEST(WorkflowSchema, DefaultsRoundTripThroughToYaml) {
  for (bool gpu : {false, true}) {
    SCOPED_TRACE(gpu ? "gpu" : "cpu");
    auto spec = resolve_default(gpu);
    for (bool comments : {true, false}) {
      std::string text = to_yaml(spec, comments);
      WorkflowSpec back;
      ASSERT_NO_THROW(back = load_workflow_text(text, "<to_yaml>")) << text;
      expect_same(spec, back);
    }
  }
}

TEST(WorkflowSchema, UnusualValuesRoundTripThroughToYaml) {
  WorkflowSpec s;
  s.name = "odd.name-1";
  // A model folder whose name has a space and a colon must come back quoted, not split.
  auto dir = fs::temp_directory_path() / "siesta wf: model";
  fs::create_directories(dir);
  fs::copy_file(fs::path(SIESTA_SOURCE_DIR) / "configs/models/tiny.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  s.model = dir.string();
  s.outputs.run_dir = "/tmp/runs/{name}";
  s.devices.master_addr = "10.0.0.1";
  s.engine.kv_cache_bytes = (3ull << 30) + 12345;
  s.trainer.lr = 1.0 / 3.0;
  s.trainer.eps = 1e-12;
  s.trainer.betas = {0.0, 0.999999};
  s.seeds.global = 9007199254740993;  // above 2^53: must not pass through a double
  s.stages = {EvalStage{3, 0.5, 4}, GrpoStage{}};
  std::string text = to_yaml(s);
  auto back = load_workflow_text(text, "<odd>");
  expect_same(s, back);
  EXPECT_EQ(back.model, dir.string());
  EXPECT_EQ(back.seeds.global, 9007199254740993);
  EXPECT_EQ(back.engine.kv_cache_bytes, (3ull << 30) + 12345);
  fs::remove_all(dir);
}

TEST(WorkflowSchema, ModelFolderNeedsConfigJson) {
  auto dir = fs::temp_directory_path() / "siesta_wf_model_test";
  fs::create_directories(dir);
  fs::remove(dir / "config.json");
  try {
    load_workflow_text("model: " + dir.string() + "\n", "<m>");
    FAIL() << "accepted a folder without config.json";
  } catch (const ValidationError& e) {
    EXPECT_NE(std::string(e.what()).find("has no config.json"), std::string::npos) << e.what();
  }
  fs::copy_file(fs::path(SIESTA_SOURCE_DIR) / "configs/models/tiny.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  auto spec = load_workflow_text("model: " + dir.string() + "\n", "<m>");
  EXPECT_TRUE(model_is_path(spec.model));
  fs::remove_all(dir);
}

TEST(WorkflowSchema, RunDirSubstitutesTheName) {
  WorkflowSpec s;
  s.name = "abc";
  EXPECT_EQ(resolved_run_dir(s), "runs/abc");
}

TEST(WorkflowSchema, ToYamlCommentsNameAllowedValues) {
  const WorkflowSpec defaults;  // a named object: GCC 12 warns (falsely) on the temporary's strings
  std::string text = to_yaml(defaults);
  EXPECT_NE(text.find("device: auto"), std::string::npos);
  EXPECT_NE(text.find("auto | cpu | cuda"), std::string::npos);
  EXPECT_NE(text.find("lr: 0.001"), std::string::npos);
  EXPECT_NE(text.find("(0, 1]"), std::string::npos);
  EXPECT_EQ(to_yaml(defaults, false).find('#'), std::string::npos);
}

TEST(WorkflowSchema, ReadmeReferenceMatchesTheSchema) {
  const std::string readme = slurp(fs::path(SIESTA_SOURCE_DIR) / "README.md");
  const std::string reference = schema_reference_markdown();
  EXPECT_NE(readme.find("## Workflow YAML reference"), std::string::npos);
  if (readme.find(reference) == std::string::npos) {
    auto out = fs::path(SIESTA_BINARY_DIR) / "workflow_reference.md";
    std::ofstream(out) << reference;
    ADD_FAILURE() << "README.md's workflow tables differ from the schema; the generated tables "
                     "are in " << out;
  }
  for (const char* key : {"`trainer.lr`", "`engine.gpu_memory_utilization`", "`group_size`",
                          "`engine.sleep_level.train`", "`examples_per_step`", "`seeds.data`"})
    EXPECT_NE(reference.find(key), std::string::npos) << key;
}
