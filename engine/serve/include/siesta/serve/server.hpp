// `siesta serve`: an OpenAI-compatible HTTP server over one InferenceEngine.
//
// Endpoints: POST /v1/completions (streaming and not), GET /v1/models, GET /health,
// GET /metrics (Prometheus text). With enable_sleep_mode AND dev_mode (the CLI sets dev_mode
// from SIESTA_SERVER_DEV_MODE=1), the vLLM dev endpoints exist too: POST /sleep?level=1|2,
// POST /wake_up[?tags=weights&tags=kv_cache], GET /is_sleeping, POST /reset_prefix_cache;
// otherwise those paths answer 404.
//
// Threading: one engine thread owns the InferenceEngine (it is built there, so a CUDA
// context is current on the thread that uses it) and steps it while work exists; HTTP
// handler threads only queue commands to it and read a snapshot of its stats.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "siesta/infer/engine.hpp"

namespace siesta::serve {

class ServeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                 // 0 = any free port (port() tells which after start())
  bool enable_sleep_mode = false;
  bool dev_mode = false;           // SIESTA_SERVER_DEV_MODE=1
  std::string served_model_name;   // empty = EngineOptions::model
};

class Server {
 public:
  // Builds the engine (on its own thread); throws what the engine throws.
  Server(infer::EngineOptions engine_options, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket; throws ServeError when the address cannot be bound.
  void start();
  int port() const;
  // Serves until stop() (from any thread, e.g. a signal watcher).
  void run();
  // Graceful stop: refuses new requests, aborts the ones in flight (their clients get
  // finish_reason "abort"), lets handlers finish, then run() returns.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace siesta::serve
