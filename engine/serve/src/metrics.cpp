#include "metrics.hpp"

#include <fmt/format.h>

namespace siesta::serve {

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBoundsS.size() && seconds > kBoundsS[i]) ++i;
  if (i < kBoundsS.size()) ++counts_[i];
  ++count_;
  sum_ += seconds;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBoundsS.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBoundsS[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                     sum_, name, count_);
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lk(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::observe_first_token(double seconds) {
  std::lock_guard lk(mu_);
  ttft_.observe(seconds);
}

void Metrics::observe_finished(double e2e_seconds, uint64_t prompt_tokens,
                               uint64_t generated_tokens) {
  std::lock_guard lk(mu_);
  e2e_.observe(e2e_seconds);
  prompt_tokens_ += prompt_tokens;
  generated_tokens_ += generated_tokens;
  ++finished_;
}

std::string Metrics::render(const infer::EngineStats& s) const {
  std::lock_guard lk(mu_);
  std::string out;
  out += "# HELP siesta_requests_total HTTP requests by endpoint and status code.\n"
         "# TYPE siesta_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("siesta_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first,
                       key.second, n);
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("siesta_prompt_tokens_total", "Prompt tokens of finished requests.", prompt_tokens_);
  counter("siesta_generation_tokens_total", "Tokens generated for finished requests.",
          generated_tokens_);
  counter("siesta_request_success_total", "Requests the engine finished.", finished_);
  counter("siesta_num_preemptions_total", "Sequences preempted for KV space.", s.num_preemptions);
  ttft_.render(out, "siesta_time_to_first_token_seconds", "Time from arrival to first token.");
  e2e_.render(out, "siesta_e2e_request_latency_seconds", "Time from arrival to last token.");
  gauge("siesta_num_requests_running", "Sequences in the running batch.", s.num_running);
  gauge("siesta_num_requests_waiting", "Sequences waiting to be scheduled.", s.num_waiting);
  gauge("siesta_kv_cache_usage_perc", "Fraction of KV cache blocks in use.", s.kv_usage);
  gauge("siesta_is_sleeping", "1 while any tag (weights, kv_cache) sleeps.",
        s.sleep.is_sleeping() ? 1 : 0);
  gauge("siesta_weights_valid", "0 after sleep(level=2) until weights are loaded.",
        s.sleep.weights_valid ? 1 : 0);
  return out;
}

}  // namespace siesta::serve
