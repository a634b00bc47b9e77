#include "engine_loop.hpp"

#include <spdlog/spdlog.h>

#include "siesta/serve/server.hpp"

namespace siesta::serve {

using Clock = std::chrono::steady_clock;

EngineLoop::EngineLoop(infer::EngineOptions options, Metrics& metrics) : metrics_(metrics) {
  std::promise<void> built;
  auto fut = built.get_future();
  thread_ = std::thread([this, options = std::move(options), b = std::move(built)]() mutable {
    run(std::move(options), std::move(b));
  });
  try {
    fut.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

EngineLoop::~EngineLoop() { stop(); }

void EngineLoop::post(std::function<void(infer::InferenceEngine&)> cmd) {
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ServeError("the server is shutting down");
    commands_.push_back(std::move(cmd));
  }
  cv_.notify_all();
}

EngineLoop::Submitted EngineLoop::submit(std::vector<int32_t> prompt,
                                         const infer::SamplingParams& params) {
  auto stream = std::make_shared<RequestStream>(params.n);
  auto arrival = Clock::now();
  infer::RequestId id = call([&](infer::InferenceEngine& e) {
    infer::RequestId rid = e.add_request(std::move(prompt), params, [this](const infer::TokenDelta& d) {
      on_delta(d.request_id, d);
    });
    live_[rid] = Live{stream, arrival, false};
    return rid;
  });
  return {id, stream};
}

void EngineLoop::abort(infer::RequestId id, const std::string& reason) {
  try {
    post([id, reason](infer::InferenceEngine& e) { e.abort(id, reason); });
  } catch (const ServeError&) {
    // Shutting down: stop() aborts everything anyway.
  }
}

infer::EngineStats EngineLoop::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void EngineLoop::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::on_delta(infer::RequestId id, const infer::TokenDelta& d) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  Live& l = it->second;
  if (!l.first_token_seen && !d.token_ids.empty()) {
    l.first_token_seen = true;
    metrics_.observe_first_token(std::chrono::duration<double>(Clock::now() - l.arrival).count());
  }
  l.stream->push(d);
}

void EngineLoop::on_finished(const infer::RequestOutput& out) {
  auto it = live_.find(out.id);
  if (it == live_.end()) return;
  uint64_t generated = 0;
  for (const auto& o : out.outputs) generated += o.token_ids.size();
  metrics_.observe_finished(std::chrono::duration<double>(Clock::now() - it->second.arrival).count(),
                            out.prompt_token_ids.size(), generated);
  it->second.stream->finish(out);
  live_.erase(it);
}

void EngineLoop::refresh_stats(infer::InferenceEngine& engine) {
  auto s = engine.stats();
  std::lock_guard lk(mu_);
  stats_ = s;
}

void EngineLoop::run(infer::EngineOptions options, std::promise<void> built) {
  std::unique_ptr<infer::InferenceEngine> engine;
  try {
    engine = std::make_unique<infer::InferenceEngine>(std::move(options));
    refresh_stats(*engine);
  } catch (...) {
    built.set_exception(std::current_exception());
    return;
  }
  built.set_value();
  infer::InferenceEngine& e = *engine;
  for (;;) {
    std::deque<std::function<void(infer::InferenceEngine&)>> cmds;
    bool stopping;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !commands_.empty() || e.has_unfinished(); });
      cmds.swap(commands_);
      stopping = stopping_;
    }
    // Commands (add/abort/sleep/wake) run between steps, so a step never sees a half-made
    // change; exceptions reach the caller through its packaged_task.
    for (auto& c : cmds) c(e);
    if (stopping) {
      for (auto& [id, l] : live_) e.abort(id, "server shutting down");
    }
    try {
      // Also collects requests that finished inside a command (abort, a draining sleep).
      if (e.has_unfinished() || !live_.empty())
        for (const auto& out : e.step()) on_finished(out);
    } catch (const std::exception& ex) {
      spdlog::error("engine step failed: {}; aborting {} request(s)", ex.what(), live_.size());
      for (auto& [id, l] : live_) {
        e.abort(id, ex.what());
        l.stream->fail(std::string("engine step failed: ") + ex.what());
      }
      live_.clear();
      try {
        e.step();  // drop the aborted outputs
      } catch (...) {
      }
    }
    refresh_stats(e);
    if (stopping) break;
  }
  for (auto& [id, l] : live_) l.stream->fail("server shut down");
  live_.clear();
  // Commands posted before stopping_ was seen and not run: their futures report broken_promise.
  std::lock_guard lk(mu_);
  commands_.clear();
}

}  // namespace siesta::serve
