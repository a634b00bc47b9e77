// What end-to-end tests of `siesta run` read back: a fresh run folder, the events of its
// metrics.jsonl, and a free loopback port for a coordinator.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace siesta::test {

// An empty path under the temp folder, unique to this test process.
inline std::filesystem::path fresh_dir(const std::string& prefix, const std::string& name) {
  auto d = std::filesystem::temp_directory_path() /
           (prefix + "_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(d);
  return d;
}

// Every complete event line; a run may be writing the last line right now, so a line that
// does not parse is skipped.
inline std::vector<boost::json::object> metric_events(const std::filesystem::path& metrics) {
  std::vector<boost::json::object> out;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);)
    try {
      if (!line.empty()) out.push_back(boost::json::parse(line).as_object());
    } catch (const std::exception&) {
    }
  return out;
}

inline std::vector<boost::json::object> of_kind(const std::vector<boost::json::object>& ev,
                                                const std::string& kind) {
  std::vector<boost::json::object> out;
  for (const auto& e : ev)
    if (e.at("event").as_string() == kind) out.push_back(e);
  return out;
}

// A port nobody listened on a moment ago (the kernel's pick for an ephemeral bind).
inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace siesta::test
