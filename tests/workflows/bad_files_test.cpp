// Every file in tests/workflows/bad/ is rejected before anything starts, with the messages its
// leading "# expect: ..." comment lines name, each diagnostic in FILE:LINE:COL form.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "siesta/workflows.hpp"

namespace fs = std::filesystem;
using namespace siesta::workflows;

namespace {

fs::path bad_dir() { return fs::path(SIESTA_SOURCE_DIR) / "tests/workflows/bad"; }

std::vector<std::string> expectations(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string line;
  const std::string tag = "# expect: ";
  while (std::getline(in, line) && line.starts_with(tag)) out.push_back(line.substr(tag.size()));
  return out;
}

std::vector<fs::path> bad_files() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(bad_dir()))
    if (e.path().extension() == ".yaml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST(BadWorkflowFiles, EachFileIsRejectedWithItsExpectedMessages) {
  auto files = bad_files();
  ASSERT_GE(files.size(), 20u) << "the bad/ folder lost files";
  // Positions are file:line:col as editors jump to them; overrides have no position.
  const std::regex line_form(R"(^.+\.yaml:\d+:\d+: error: .+$)");
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    auto expect = expectations(f);
    ASSERT_FALSE(expect.empty()) << "first line must be '# expect: <message substring>'";
    try {
      load_workflow(f);
      ADD_FAILURE() << "accepted a bad workflow";
    } catch (const ValidationError& e) {
      const std::string what = e.what();
      for (const auto& x : expect) EXPECT_NE(what.find(x), std::string::npos) << "missing: " << x << "\ngot:\n" << what;
      ASSERT_FALSE(e.diagnostics().empty());
      for (const auto& d : e.diagnostics()) {
        EXPECT_TRUE(std::regex_match(d.to_string(), line_form)) << d.to_string();
        EXPECT_EQ(d.origin, f.string());
      }
      // One diagnostic per line of what(): the CLI prints what() as its error list.
      EXPECT_EQ(static_cast<size_t>(std::count(what.begin(), what.end(), '\n')) + 1,
                e.diagnostics().size());
    }
  }
}

TEST(BadWorkflowFiles, AllErrorsOfAFileAreReportedAtOnceInFileOrder) {
  try {
    load_workflow(bad_dir() / "multiple_errors.yaml");
    FAIL() << "accepted";
  } catch (const ValidationError& e) {
    const auto& ds = e.diagnostics();
    EXPECT_EQ(ds.size(), expectations(bad_dir() / "multiple_errors.yaml").size()) << e.what();
    for (size_t i = 1; i < ds.size(); ++i)
      EXPECT_LE(std::tie(ds[i - 1].line, ds[i - 1].column), std::tie(ds[i].line, ds[i].column));
  }
}

TEST(BadWorkflowFiles, ValidationExitCodeIsTwo) { EXPECT_EQ(kValidationExitCode, 2); }

TEST(BadWorkflowFiles, MissingFileSaysSo) {
  try {
    load_workflow(bad_dir() / "no_such_file.yaml");
    FAIL() << "opened a missing file";
  } catch (const ValidationError&) {
    FAIL() << "a missing file is not a validation error";
  } catch (const WorkflowError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open workflow file"), std::string::npos);
  }
}
