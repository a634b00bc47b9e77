// The engine thread: builds and owns the InferenceEngine, runs commands queued by HTTP
// handler threads, and steps the engine while requests are in flight. Nothing else touches
// the engine, so the engine needs no locks of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "metrics.hpp"
#include "request_stream.hpp"
#include "siesta/infer/engine.hpp"

namespace siesta::serve {

class EngineLoop {
 public:
  // Blocks until the engine is built; rethrows what its constructor threw.
  EngineLoop(infer::EngineOptions options, Metrics& metrics);
  ~EngineLoop();  // stops and joins

  // Runs fn(engine) on the engine thread and returns its result (or rethrows its exception).
  template <class F>
  auto call(F fn) -> decltype(fn(std::declval<infer::InferenceEngine&>())) {
    using R = decltype(fn(std::declval<infer::InferenceEngine&>()));
    auto task = std::make_shared<std::packaged_task<R(infer::InferenceEngine&)>>(std::move(fn));
    auto fut = task->get_future();
    post([task](infer::InferenceEngine& e) { (*task)(e); });
    return fut.get();
  }

  // Queues a request; throws InferError (InvalidArgument, Sleeping, WeightsNotLoaded) from
  // the engine's own checks. The stream ends with the final output (or an abort).
  struct Submitted {
    infer::RequestId id;
    std::shared_ptr<RequestStream> stream;
  };
  Submitted submit(std::vector<int32_t> prompt, const infer::SamplingParams& params);
  void abort(infer::RequestId id, const std::string& reason);

  // A copy of the engine's stats after the last step or command (no engine access).
  infer::EngineStats stats() const;
  // Aborts everything in flight, refuses new commands and joins the thread.
  void stop();

 private:
  struct Live {
    std::shared_ptr<RequestStream> stream;
    std::chrono::steady_clock::time_point arrival;
    bool first_token_seen = false;
  };
  void post(std::function<void(infer::InferenceEngine&)> cmd);
  void run(infer::EngineOptions options, std::promise<void> built);
  void on_delta(infer::RequestId id, const infer::TokenDelta& d);
  void on_finished(const infer::RequestOutput& out);
  void refresh_stats(infer::InferenceEngine& engine);

  Metrics& metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(infer::InferenceEngine&)>> commands_;
  bool stopping_ = false;
  infer::EngineStats stats_;
  std::map<infer::RequestId, Live> live_;   // engine thread only
  std::thread thread_;
};

}  // namespace siesta::serve
