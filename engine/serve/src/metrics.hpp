// Server metrics in Prometheus text format: request counts by HTTP status, token counters,
// time-to-first-token and end-to-end latency histograms, and engine gauges (running and
// waiting requests, KV usage, is_sleeping) taken from the engine thread's stats snapshot.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "siesta/infer/engine.hpp"

namespace siesta::serve {

class Histogram {
 public:
  static constexpr std::array<double, 14> kBoundsS = {0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
                                                      0.5,   1.0,   2.5,  5.0,  10.0, 30.0, 60.0};
  void observe(double seconds);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::array<uint64_t, kBoundsS.size()> counts_{};  // per bucket (not cumulative)
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void observe_first_token(double seconds);
  void observe_finished(double e2e_seconds, uint64_t prompt_tokens, uint64_t generated_tokens);
  std::string render(const infer::EngineStats& stats) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0, finished_ = 0;
  Histogram ttft_, e2e_;
};

}  // namespace siesta::serve
