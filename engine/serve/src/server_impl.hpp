// State shared by server.cpp (lifecycle, small endpoints, dev endpoints) and completions.cpp.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <httplib.h>

#include "api_error.hpp"
#include "engine_loop.hpp"
#include "metrics.hpp"
#include "siesta/serve/server.hpp"

namespace siesta::serve {

struct Server::Impl {
  ServerOptions opt;
  std::string engine_model;                     // EngineOptions::model
  std::shared_ptr<const infer::Tokenizer> tokenizer;
  int vocab_size = 0, max_model_len = 0;
  int64_t started_unix = 0;
  Metrics metrics;
  std::unique_ptr<EngineLoop> loop;
  httplib::Server http;
  std::atomic<uint64_t> next_completion{0};
  int bound_port = -1;
  std::atomic<bool> stopped{false};
  std::atomic<bool> run_entered{false}, run_returned{false};
  // Streaming responses still being written. stop() waits for them (bounded) because
  // httplib's stop() cuts chunked responses off mid-stream.
  std::atomic<int> open_streams{0};

  void register_routes();
  void register_dev_routes();   // /sleep, /wake_up, /is_sleeping, /reset_prefix_cache
  // POST routes take the body through a content reader (see post_route in server.cpp).
  using BodyHandler = std::function<void(const httplib::Request&, httplib::Response&, const std::string& body)>;
  void post_route(const std::string& pattern, BodyHandler handler);
  void handle_completions(const std::string& body, httplib::Response& res);
  // Sends e as an OpenAI error and counts it.
  void reply_error(httplib::Response& res, const ApiError& e, const char* endpoint);
};

// InferError -> the HTTP answer (InvalidArgument 400; Sleeping, WeightsNotLoaded 503;
// OutOfMemory 507 is not OpenAI's, so 503 too; the rest 500).
ApiError api_error_from(const std::exception& e);

}  // namespace siesta::serve
