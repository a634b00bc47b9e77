// Runs the real `siesta` binary (or any program) for end-to-end tests and captures its output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace siesta::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;   // stdout
  std::string err;   // stderr
};

inline std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `program args...` through /bin/sh with an optional environment prefix ("A=1 B=2").
inline ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                                 const std::string& env = "", int timeout_s = 600) {
  static int counter = 0;
  auto dir = std::filesystem::temp_directory_path() /
             ("siesta_e2e_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  std::string cmd = env;
  cmd.append(" timeout ").append(std::to_string(timeout_s)).append(" ").append(shell_quote(program));
  for (auto& a : args) cmd.append(" ").append(shell_quote(a));
  cmd.append(" >").append(shell_quote((dir / "out").string()));
  cmd.append(" 2>").append(shell_quote((dir / "err").string())).append(" </dev/null");
  int status = std::system(cmd.c_str());
  ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  std::filesystem::remove_all(dir);
  return r;
}

inline std::string siesta_binary() { return std::string(SIESTA_BINARY_DIR) + "/bin/siesta"; }

inline ProcessResult run_siesta(const std::vector<std::string>& args, const std::string& env = "",
                                int timeout_s = 600) {
  return run_process(siesta_binary(), args, env, timeout_s);
}

}  // namespace siesta::test
