// The official `openai` npm package (tests/serve/node, run with the system's node) against the
// real `siesta serve`: the checks live in node/openai_client.mjs; this test starts the server
// and skips with the command to run when node or the package is missing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "serve_fixture.hpp"

using namespace siesta::test;

namespace {

const std::filesystem::path kNodeDir = std::filesystem::path(SIESTA_SOURCE_DIR) / "tests/serve/node";


}  // namespace

class OpenAiNodeClient : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("node --version >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "node is not installed (scripts/setup.sh installs nodejs)";
    if (!std::filesystem::exists(kNodeDir / "node_modules/openai/package.json"))
      GTEST_SKIP() << "the openai npm package is missing: run `npm ci --prefix tests/serve/node` "
                      "(scripts/setup.sh does when npm is installed)";
  }

  void run_client(const std::vector<std::string>& server_env, bool dev) {
    ServerProcess s;
    auto args = tiny_server_args();
    if (dev) args.push_back("--enable-sleep-mode");
    ASSERT_TRUE(s.start(args, server_env));
    std::vector<std::string> cargs = {(kNodeDir / "openai_client.mjs").string(),
                                      "http://127.0.0.1:" + std::to_string(s.port())};
    if (dev) cargs.push_back("--dev");
    auto r = run_process("node", cargs, "", 120);
    EXPECT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err
                              << "\nserver stderr:\n" << s.err();
    EXPECT_NE(r.out.find("checks passed"), std::string::npos) << r.out;
    std::cout << r.out;
    EXPECT_EQ(s.stop(), 0);
  }
};

TEST_F(OpenAiNodeClient, CompletionsStreamingModelsAndErrors) { run_client({}, false); }

TEST_F(OpenAiNodeClient, DevModeSleepGives503AndWakeRestores) {
  run_client({"SIESTA_SERVER_DEV_MODE=1"}, true);
}
