// What one HTTP request waits on: the engine thread pushes token increments and the final
// output; the handler thread pops them (streaming) or waits for the end (non-streaming).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "siesta/infer/outputs.hpp"

namespace siesta::serve {

class RequestStream {
 public:
  explicit RequestStream(int n) : samples_(static_cast<size_t>(n)) {
    for (int i = 0; i < n; ++i) samples_[static_cast<size_t>(i)].index = i;
  }

  // ---- engine thread ----
  void push(const infer::TokenDelta& d) {
    std::lock_guard lk(mu_);
    if (d.index < 0 || static_cast<size_t>(d.index) >= samples_.size()) return;
    auto& s = samples_[static_cast<size_t>(d.index)];
    s.token_ids.insert(s.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    s.logprobs.insert(s.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    s.text += d.text;
    num_prompt_tokens_ = d.num_prompt_tokens;
    if (d.finished && s.finish_reason == infer::FinishReason::None) {
      s.finish_reason = d.finish_reason;
      s.stop_reason = d.stop_reason;
      ++num_finished_;
    }
    deltas_.push_back(d);
    cv_.notify_all();
  }
  // The engine's final word on the request (authoritative text), or an error.
  void finish(const infer::RequestOutput& out) {
    std::lock_guard lk(mu_);
    num_prompt_tokens_ = static_cast<int>(out.prompt_token_ids.size());
    for (const auto& o : out.outputs) {
      if (o.index < 0 || static_cast<size_t>(o.index) >= samples_.size()) continue;
      samples_[static_cast<size_t>(o.index)] = o;
    }
    done_ = true;
    cv_.notify_all();
  }
  void fail(const std::string& message) {
    std::lock_guard lk(mu_);
    error_ = message;
    done_ = true;
    cv_.notify_all();
  }

  // ---- handler thread ----
  // Waits until deltas are queued or the request ended; moves the deltas out. Returns false
  // once nothing more will come (done and drained).
  bool wait_deltas(std::vector<infer::TokenDelta>& out) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !deltas_.empty() || done_; });
    out.assign(deltas_.begin(), deltas_.end());
    deltas_.clear();
    return !out.empty() || !done_;
  }
  void wait_done() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return done_; });
  }
  bool done() const { std::lock_guard lk(mu_); return done_; }
  std::optional<std::string> error() const { std::lock_guard lk(mu_); return error_; }
  std::vector<infer::CompletionOutput> samples() const { std::lock_guard lk(mu_); return samples_; }
  int num_prompt_tokens() const { std::lock_guard lk(mu_); return num_prompt_tokens_; }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<infer::TokenDelta> deltas_;
  std::vector<infer::CompletionOutput> samples_;
  int num_finished_ = 0;
  int num_prompt_tokens_ = 0;
  bool done_ = false;
  std::optional<std::string> error_;
};

}  // namespace siesta::serve
