// The real `siesta` binary: help, usage errors (exit 2, one line), doctor, version.
#include <gtest/gtest.h>

#include "process.hpp"

using siesta::test::run_siesta;

TEST(Cli, EverySubcommandHasHelp) {
  for (const char* sub : {"run", "serve", "replay", "trace", "bench", "doctor", "version"}) {
    auto r = run_siesta({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
}

TEST(Cli, UnknownFlagIsAOneLineErrorWithExitCode2) {
  auto r = run_siesta({"doctor", "--frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--frobnicate"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(Cli, MissingFileIsAOneLineErrorWithExitCode2) {
  for (std::vector<std::string> args : {std::vector<std::string>{"run", "/nonexistent/wf.yaml"},
                                        {"replay", "/nonexistent/trace.jsonl"}}) {
    auto r = run_siesta(args);
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_NE(r.err.find("/nonexistent/"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(Cli, UnknownSubcommandExits2) {
  auto r = run_siesta({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, DoctorReportsBuildCudaNcclHostAndActors) {
  auto r = run_siesta({"doctor"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* line : {"build:", "cuda:", "nccl:", "host:", "actors:", "missing:"})
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " missing from:\n" << r.out;
  EXPECT_NE(r.out.find("actors:  CAF 0.17.6, ok"), std::string::npos) << r.out;
}

TEST(Cli, VersionPrintsVersionAndCaf) {
  auto r = run_siesta({"version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("siesta 0.1.0"), std::string::npos) << r.out;
}
