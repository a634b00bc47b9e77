// A child `siesta` (or any program) that runs while the test talks to it: stdout and stderr go
// to files the test can read at any time, it dies with the test process, and the test can
// signal it and wait for its exit code. run_process (process.hpp) is for programs that run to
// completion.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"

namespace siesta::test {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts `program args...` with extra environment variables ("NAME=value"); variables named
  // in unset are removed from the inherited environment first.
  void spawn(const std::string& program, const std::vector<std::string>& args,
             const std::vector<std::string>& env = {}, const std::vector<std::string>& unset = {}) {
    dir_ = std::filesystem::temp_directory_path() /
           ("siesta_child_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(dir_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // no stray child if the test process crashes
      int out = ::open((dir_ / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open((dir_ / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      for (const auto& u : unset) ::unsetenv(u.c_str());
      for (const auto& e : env) ::putenv(::strdup(e.c_str()));
      std::vector<char*> argv{const_cast<char*>(program.c_str())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
  }

  ~ChildProcess() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string out() const { return slurp(dir_ / "out"); }
  std::string err() const { return slurp(dir_ / "err"); }

  // Sends sig and waits for the exit code (nullopt if it did not exit within timeout_s).
  std::optional<int> stop(int sig = SIGTERM, double timeout_s = 20) {
    if (pid_ <= 0) return std::nullopt;
    if (!exit_code_) ::kill(pid_, sig);
    return wait_exit(timeout_s);
  }
  std::optional<int> wait_exit(double timeout_s) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto code = poll_exit()) return code;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }
  // The exit code once it has exited (128 + signal when a signal killed it).
  std::optional<int> poll_exit() {
    if (exit_code_ || pid_ <= 0) return exit_code_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_)
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace siesta::test
