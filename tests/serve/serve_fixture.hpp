// The real `siesta serve` for end-to-end tests: started as a child process on port 0 (it prints
// the port it bound), talked to with the real curl binary, stopped with a signal.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "child_process.hpp"

namespace siesta::test {

namespace json = boost::json;

// The options every test server gets: the tiny preset on the CPU with a small KV cache, so a
// server is up in well under a second on a 2-core machine.
inline std::vector<std::string> tiny_server_args() {
  return {"serve", "--model", "tiny", "--device", "cpu", "--port", "0", "--max-batch", "32",
          "--kv-cache-bytes", std::to_string(8u << 20)};
}

class ServerProcess : public ChildProcess {
 public:
  // Starts `siesta args...` with extra environment variables ("NAME=value") and waits until it
  // prints the port it listens on. Fails the test (and returns false) if it exits first.
  bool start(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
             double timeout_s = 60) {
    spawn(siesta_binary(), args, env, {"SIESTA_SERVER_DEV_MODE"});
    const std::regex listening(R"(listening on http://[^:\s]+:(\d+))");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      std::string o = out();
      if (std::regex_search(o, m, listening)) {
        port_ = std::stoi(m[1]);
        return true;
      }
      if (auto code = poll_exit()) {
        ADD_FAILURE() << "siesta serve exited with " << *code << " before listening\nstdout:\n"
                      << out() << "\nstderr:\n" << err();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "siesta serve did not print its port within " << timeout_s << " s\nstdout:\n"
                  << out() << "\nstderr:\n" << err();
    return false;
  }

  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  int port_ = -1;
};

struct HttpResult {
  int status = 0;        // 0: curl itself failed (see body)
  std::string body;
  json::value json() const {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) ADD_FAILURE() << "response is not JSON (" << ec.message() << "): " << body;
    return v;
  }
};

// One request with the curl binary: `-w` appends the status code after a marker line.
inline HttpResult curl(const std::string& method, const std::string& url,
                       const std::optional<std::string>& body = std::nullopt,
                       const std::vector<std::string>& extra = {}) {
  std::string cmd = "curl -sS --max-time 60 -X " + method;
  if (body)
    cmd += " -H 'Content-Type: application/json' --data-binary " + shell_quote(*body);
  for (const auto& e : extra) cmd += " " + shell_quote(e);
  cmd += " -w '\\n@@status=%{http_code}' " + shell_quote(url) + " 2>&1";
  HttpResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.body.append(buf, n);
  ::pclose(p);
  auto at = r.body.rfind("\n@@status=");
  if (at == std::string::npos) return r;
  r.status = std::stoi(r.body.substr(at + 10));
  r.body.resize(at);
  return r;
}

inline HttpResult post_json(const ServerProcess& s, const std::string& path, const json::value& body) {
  return curl("POST", s.url(path), json::serialize(body));
}
inline HttpResult post(const ServerProcess& s, const std::string& path) {
  return curl("POST", s.url(path));
}
inline HttpResult get(const ServerProcess& s, const std::string& path) {
  return curl("GET", s.url(path));
}

}  // namespace siesta::test
