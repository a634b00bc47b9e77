#include "runner_children.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "siesta/workflows/diagnostics.hpp"

extern char** environ;

namespace siesta::workflows {

namespace {

bool is_launch_variable(const char* entry) {
  for (const char* name : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "MASTER_ADDR=", "MASTER_PORT="})
    if (std::strncmp(entry, name, std::strlen(name)) == 0) return true;
  return false;
}

std::string describe(int rank, pid_t pid, int status) {
  std::string who = "worker rank " + std::to_string(rank) + " (pid " + std::to_string(pid) + ")";
  if (WIFSIGNALED(status))
    return who + " was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return who + " exited with code " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

WorkerChildren::~WorkerChildren() {
  for (auto& c : children_)
    if (!c.exited) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, nullptr, 0);
    }
}

void WorkerChildren::spawn(const WorkerEnv& env) {
  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls are allowed (the coordinator has threads).
  std::vector<std::string> vars;
  for (char** e = environ; *e; ++e)
    if (!is_launch_variable(*e)) vars.emplace_back(*e);
  vars.push_back("RANK=" + std::to_string(env.rank));
  vars.push_back("WORLD_SIZE=" + std::to_string(env.world_size));
  vars.push_back("LOCAL_RANK=" + std::to_string(env.local_rank));
  vars.push_back("MASTER_ADDR=" + env.master_addr);
  vars.push_back("MASTER_PORT=" + std::to_string(env.master_port));
  std::vector<char*> envp;
  for (auto& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);
  std::string arg0 = program_, arg1 = "worker";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0)
    throw WorkflowError("cannot start worker rank " + std::to_string(env.rank) + ": fork: " +
                        std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);   // the parent died before prctl
    ::setpgid(0, 0);
    // The coordinator's sockets (the join port, the weight transport's listener) stay with it.
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(arg0.c_str(), argv, envp.data());
    ::_exit(127);
  }
  children_.push_back(Child{env.rank, pid, std::nullopt, false});
}

bool WorkerChildren::poll(Child& c) {
  if (c.exited) return true;
  int status = 0;
  if (::waitpid(c.pid, &status, WNOHANG) != c.pid) return false;
  c.exited = describe(c.rank, c.pid, status);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    *c.exited += " (could not run " + program_ + " worker)";
  return true;
}

std::optional<std::string> WorkerChildren::first_exited() {
  for (auto& c : children_)
    if (!c.reported && poll(c)) {
      c.reported = true;
      return c.exited;
    }
  return std::nullopt;
}

std::optional<std::string> WorkerChildren::outcome(int rank, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (auto& c : children_) {
    if (c.rank != rank) continue;
    while (!poll(c) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return c.exited;
  }
  return std::nullopt;
}

std::vector<std::pair<int, std::string>> WorkerChildren::reap(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::vector<std::pair<int, std::string>> out;
  for (auto& c : children_) {
    while (!poll(c) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!c.exited) {
      ::kill(c.pid, SIGKILL);
      int status = 0;
      ::waitpid(c.pid, &status, 0);
      c.exited = describe(c.rank, c.pid, status) + " (it did not exit when the run ended)";
    }
    if (!c.reported) out.emplace_back(c.rank, *c.exited);
    c.reported = true;
  }
  return out;
}

void WorkerChildren::signal(int rank, int sig) {
  for (auto& c : children_)
    if (c.rank == rank && !poll(c)) ::kill(c.pid, sig);
}

pid_t WorkerChildren::pid_of(int rank) const {
  for (const auto& c : children_)
    if (c.rank == rank) return c.pid;
  return -1;
}

}  // namespace siesta::workflows
