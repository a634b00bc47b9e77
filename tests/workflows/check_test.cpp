// Validation as a value (what `siesta run` prints before exiting with code 2) and the text of
// `siesta run --print-default`.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "siesta/workflows.hpp"

namespace fs = std::filesystem;
using namespace siesta::workflows;

namespace {
fs::path bad_dir() { return fs::path(SIESTA_SOURCE_DIR) / "tests/workflows/bad"; }
}  // namespace

TEST(CheckWorkflow, ValidFileGivesASpecAndNoDiagnostics) {
  auto c = check_workflow_file(fs::path(SIESTA_SOURCE_DIR) / "configs/workflows/default-cpu.yaml");
  ASSERT_TRUE(c.ok()) << format_diagnostics(c.diagnostics);
  EXPECT_TRUE(c.diagnostics.empty());
  EXPECT_EQ(c.spec->name, "default-cpu");
}

TEST(CheckWorkflow, EveryErrorOfFileAndOverridesIsReturnedAndPrintedWithCarets) {
  auto c = check_workflow_file(bad_dir() / "unknown_key.yaml", {"engine.max_batch=0"});
  ASSERT_FALSE(c.ok());
  ASSERT_EQ(c.diagnostics.size(), 2u);
  EXPECT_EQ(c.diagnostics[0].source_line, "  lrr: 1e-3");
  EXPECT_TRUE(c.diagnostics[1].source_line.empty()) << "an override has no file line";
  const std::string text = format_diagnostics(c.diagnostics);
  const std::string file = (bad_dir() / "unknown_key.yaml").string();
  EXPECT_NE(text.find(file + ":5:3: error: trainer.lrr: unknown key; did you mean 'lr'?"), std::string::npos) << text;
  // The line and a caret under column 3.
  EXPECT_NE(text.find("    5 |   lrr: 1e-3\n      |   ^\n"), std::string::npos) << text;
  EXPECT_NE(text.find("--set engine.max_batch=0: error: engine.max_batch: 0 is out of range (allowed: 1..4096)\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("2 errors in " + file + " and the --set overrides; nothing was started\n"),
            std::string::npos) << text;
  std::ostringstream printed;
  print_diagnostics(printed, c.diagnostics);
  EXPECT_EQ(printed.str(), text);
}

TEST(CheckWorkflow, SyntaxErrorShowsItsLine) {
  auto c = check_workflow_file(bad_dir() / "syntax_error.yaml");
  ASSERT_EQ(c.diagnostics.size(), 1u);
  EXPECT_EQ(c.diagnostics[0].source_line, "name: broken");
  EXPECT_NE(format_diagnostics(c.diagnostics).find("    5 | name: broken\n"), std::string::npos);
}

TEST(CheckWorkflow, MissingFileIsOneDiagnosticWithoutPosition) {
  auto c = check_workflow_file(bad_dir() / "no_such.yaml");
  ASSERT_FALSE(c.ok());
  ASSERT_EQ(c.diagnostics.size(), 1u);
  EXPECT_EQ(c.diagnostics[0].line, 0);
  EXPECT_EQ(c.diagnostics[0].to_string(),
            (bad_dir() / "no_such.yaml").string() + ": error: cannot open workflow file (no such file)");
}

TEST(CheckWorkflow, DefaultWithBadOverrideNamesTheOverride) {
  auto c = check_default_workflow(false, {"trainer.lr=2"});
  ASSERT_EQ(c.diagnostics.size(), 1u);
  EXPECT_EQ(c.diagnostics[0].to_string(),
            "--set trainer.lr=2: error: trainer.lr: 2 is out of range (allowed: (0, 1])");
  EXPECT_TRUE(check_default_workflow(true).ok());
}

TEST(PrintDefault, IsTheBuiltInWorkflowForTheDeviceAndParsesBackToIt) {
  for (bool gpu : {false, true}) {
    SCOPED_TRACE(gpu ? "gpu" : "cpu");
    const std::string text = default_workflow_text(gpu);
    EXPECT_NE(text.find(gpu ? "grpo-small-gpu.yaml" : "default-cpu.yaml"), std::string::npos);
    EXPECT_NE(text.find(gpu ? "model: small" : "model: tiny"), std::string::npos) << text;
    auto back = load_workflow_text(text, "<print-default>");
    EXPECT_EQ(to_yaml(back, false), to_yaml(resolve_default(gpu), false));
  }
  const std::string tuned = default_workflow_text(false, {"trainer.lr=1e-4"});
  EXPECT_NE(tuned.find("# Overrides applied: --set trainer.lr=1e-4\n"), std::string::npos);
  EXPECT_DOUBLE_EQ(load_workflow_text(tuned, "<p>").trainer.lr, 1e-4);
  EXPECT_THROW(default_workflow_text(false, {"trainer.lr=7"}), ValidationError);
}
