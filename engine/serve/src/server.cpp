#include <algorithm>
#include <chrono>
#include <thread>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

#include "server_impl.hpp"
#include "siesta/infer/error.hpp"

namespace siesta::serve {

namespace json = boost::json;

ApiError api_error_from(const std::exception& e) {
  if (auto* ie = dynamic_cast<const infer::InferError*>(&e)) {
    switch (ie->kind()) {
      case infer::ErrorKind::InvalidArgument: return bad_request(ie->what());
      case infer::ErrorKind::Sleeping:
        return ApiError(503, "ServiceUnavailableError", std::string("the engine is sleeping: ") + ie->what());
      case infer::ErrorKind::WeightsNotLoaded:
        return ApiError(503, "ServiceUnavailableError", ie->what());
      case infer::ErrorKind::OutOfMemory: return ApiError(503, "ServiceUnavailableError", ie->what());
      case infer::ErrorKind::NotFound: return ApiError(404, "NotFoundError", ie->what());
      case infer::ErrorKind::Internal: break;
    }
    return ApiError(500, "InternalServerError", ie->what());
  }
  if (auto* ae = dynamic_cast<const ApiError*>(&e)) return *ae;
  if (dynamic_cast<const ServeError*>(&e)) return ApiError(503, "ServiceUnavailableError", e.what());
  return ApiError(500, "InternalServerError", e.what());
}

void Server::Impl::reply_error(httplib::Response& res, const ApiError& e, const char* endpoint) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
  metrics.count_request(endpoint, e.status);
}

namespace {

void reply_json(httplib::Response& res, const json::value& v) {
  res.status = 200;
  res.set_content(json::serialize(v), "application/json");
}

}  // namespace

// httplib 0.11 reads the body of every POST before routing, and a request with neither
// Content-Length nor chunked encoding (what `curl -X POST URL` sends) is read until the
// connection closes: the client waits for the read timeout and gets a 400. Routes with a
// content reader are dispatched before that read, so every POST route takes one and reads a
// body only when the request announces one.
void Server::Impl::post_route(const std::string& pattern, BodyHandler handler) {
  http.Post(pattern, [handler = std::move(handler)](const httplib::Request& q, httplib::Response& r,
                                                    const httplib::ContentReader& read) {
    std::string body;
    const bool chunked = q.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
    if (q.has_header("Content-Length") || chunked)
      read([&](const char* data, size_t len) {
        body.append(data, len);
        return true;
      });
    handler(q, r, body);
  });
}

void Server::Impl::register_routes() {
  post_route("/v1/completions", [this](const httplib::Request&, httplib::Response& r,
                                       const std::string& body) { handle_completions(body, r); });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
    json::object m{{"id", opt.served_model_name}, {"object", "model"}, {"created", started_unix},
                   {"owned_by", "siesta"},        {"root", engine_model},
                   {"max_model_len", max_model_len}};
    m["parent"] = nullptr;
    reply_json(r, json::object{{"object", "list"}, {"data", json::array{m}}});
    metrics.count_request("/v1/models", 200);
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
    r.status = 200;
    metrics.count_request("/health", 200);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    r.set_content(metrics.render(loop->stats()), "text/plain; version=0.0.4");
  });

  // vLLM's dev endpoints: they exist only when both switches are on (else 404 like any
  // unknown path), because they let any local client put the engine to sleep.
  if (opt.enable_sleep_mode && opt.dev_mode) register_dev_routes();

  // Any other path with a body-capable method: 404 without waiting for a body that does not
  // come (see post_route). Registered last: httplib tries routes in registration order.
  auto not_found = [this](const httplib::Request& q, httplib::Response& r,
                          const httplib::ContentReader& read) {
    if (q.has_header("Content-Length") ||
        q.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos)
      read([](const char*, size_t) { return true; });
    reply_error(r, ApiError(404, "NotFoundError", "no route " + q.method + " " + q.path),
                "unknown");
  };
  http.Post(".*", not_found);
  http.Put(".*", not_found);
  http.Patch(".*", not_found);
  http.Delete(".*", not_found);
}

void Server::Impl::register_dev_routes() {
  auto guarded = [this](const char* endpoint, auto body) {
    return [this, endpoint, body](const httplib::Request& q, httplib::Response& r, const std::string& = {}) {
      try {
        body(q, r);
        metrics.count_request(endpoint, r.status);
      } catch (const std::exception& e) {
        reply_error(r, api_error_from(e), endpoint);
      }
    };
  };
  post_route("/sleep", guarded("/sleep", [this](const httplib::Request& q, httplib::Response& r) {
    int level = 1;
    if (q.has_param("level")) {
      const std::string s = q.get_param_value("level");
      if (s != "1" && s != "2")
        throw bad_request("'level' must be 1 or 2, got '" + s + "'", "level");
      level = s[0] - '0';
    }
    auto t0 = std::chrono::steady_clock::now();
    loop->call([level](infer::InferenceEngine& e) { e.sleep(level); return 0; });
    spdlog::info("sleep(level={}) took {:.1f} ms", level,
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    r.status = 200;
  }));
  post_route("/wake_up", guarded("/wake_up", [this](const httplib::Request& q, httplib::Response& r) {
    std::vector<std::string> tags;
    for (size_t i = 0; i < q.get_param_value_count("tags"); ++i)
      tags.push_back(q.get_param_value("tags", i));
    for (const auto& t : tags)
      if (t != "weights" && t != "kv_cache")
        throw bad_request("unknown tag '" + t + "' (allowed: weights, kv_cache)", "tags");
    auto t0 = std::chrono::steady_clock::now();
    loop->call([tags](infer::InferenceEngine& e) { e.wake_up(tags); return 0; });
    spdlog::info("wake_up({}) took {:.1f} ms", tags.empty() ? "all" : fmt::format("{}", fmt::join(tags, ",")),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    r.status = 200;
  }));
  http.Get("/is_sleeping", guarded("/is_sleeping", [this](const httplib::Request&, httplib::Response& r) {
    bool s = loop->call([](infer::InferenceEngine& e) { return e.is_sleeping(); });
    reply_json(r, json::object{{"is_sleeping", s}});
  }));
  post_route("/reset_prefix_cache",
             guarded("/reset_prefix_cache", [this](const httplib::Request&, httplib::Response& r) {
              bool ok = loop->call([](infer::InferenceEngine& e) { return e.reset_prefix_cache(); });
              if (!ok)
                throw ApiError(409, "ConflictError",
                               "reset_prefix_cache needs an idle engine with its KV cache awake "
                               "(requests in flight, or kv_cache asleep)");
              r.status = 200;
            }));
}

Server::Server(infer::EngineOptions engine_options, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.opt = std::move(options);
  m.engine_model = engine_options.model;
  if (m.opt.served_model_name.empty()) m.opt.served_model_name = engine_options.model;
  if (!engine_options.tokenizer) engine_options.tokenizer = std::make_shared<infer::ByteTokenizer>();
  m.tokenizer = engine_options.tokenizer;
  m.started_unix = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  const int max_num_seqs = engine_options.max_num_seqs;
  m.loop = std::make_unique<EngineLoop>(std::move(engine_options), m.metrics);
  std::tie(m.vocab_size, m.max_model_len) = m.loop->call([](infer::InferenceEngine& e) {
    return std::make_pair(e.model_config().vocab_size, e.max_model_len());
  });
  // Streaming responses hold a handler thread each for their whole life.
  // Sized so that a full batch of streaming clients (one request per sequence) fits, plus
  // room for /health, /metrics and the dev endpoints while they stream.
  const size_t handler_threads = size_t(std::max(64, max_num_seqs + 16));
  m.http.new_task_queue = [handler_threads] { return new httplib::ThreadPool(handler_threads); };
  m.http.set_payload_max_length(64u << 20);
  // httplib's default also sets SO_REUSEPORT, with which a second server on the same port
  // binds silently and the kernel splits connections between the two. SO_REUSEADDR alone
  // still allows a quick restart over TIME_WAIT sockets.
  m.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  m.http.set_error_handler([](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return;
    std::string msg = r.status == 404 ? "no route " + q.method + " " + q.path
                                      : "HTTP " + std::to_string(r.status);
    r.set_content(error_body(ApiError(r.status, r.status == 404 ? "NotFoundError" : "Error", msg)),
                  "application/json");
  });
  m.http.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      auto err = api_error_from(e);
      r.status = err.status;
      r.set_content(error_body(err), "application/json");
    } catch (...) {
      r.status = 500;
    }
  });
  m.register_routes();
}

Server::~Server() { stop(); }

void Server::start() {
  auto& m = *impl_;
  if (m.opt.port == 0) {
    m.bound_port = m.http.bind_to_any_port(m.opt.host);
  } else {
    m.bound_port = m.http.bind_to_port(m.opt.host, m.opt.port) ? m.opt.port : -1;
  }
  if (m.bound_port < 0)
    throw ServeError("cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                     " (address in use, or not an address of this machine)");
}

int Server::port() const { return impl_->bound_port; }

void Server::run() {
  auto& m = *impl_;
  if (m.bound_port < 0) start();
  // run_entered / stopped are a Dekker pair with stop(): either run() sees the stop and does
  // not listen, or stop() sees run() and waits until listening has begun before stopping it
  // (httplib's stop() is a no-op on a server that is not listening yet).
  m.run_entered = true;
  if (!m.stopped) m.http.listen_after_bind();
  m.run_returned = true;
}

void Server::stop() {
  auto& m = *impl_;
  if (m.stopped.exchange(true)) return;
  // Engine first: in-flight requests end (finish_reason "abort"), so their handlers return
  // and the HTTP server's pool can drain.
  m.loop->stop();
  // Every stream has its final chunks now (the engine finished or aborted each request);
  // let the handlers write them and [DONE] before the sockets close. A client that does
  // not read cannot hold the shutdown for more than the bound.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (m.open_streams > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (m.run_entered) {
    while (!m.http.is_running() && !m.run_returned)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  m.http.stop();
}

}  // namespace siesta::serve
