// `siesta serve`: the OpenAI-compatible HTTP server over the inference engine.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/serve/server.hpp"

namespace siesta::cli {

namespace {

int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_signals{0};   // lock-free, so safe in a handler

// Async-signal-safe: one byte to the watcher; a second signal exits without cleanup.
void on_stop_signal(int sig) {
  if (g_signals++ > 0) ::_exit(128 + sig);
  unsigned char b = static_cast<unsigned char>(sig);
  (void)!::write(g_signal_pipe[1], &b, 1);
}

// "auto" (cuda:0 when a GPU is usable, else cpu), "cpu", "cuda", "cuda:N".
bool parse_device(const std::string& s, Device& out) {
  if (s == "auto") { out = kernels::cuda_available() ? Device::cuda(0) : Device::cpu(); return true; }
  if (s == "cpu") { out = Device::cpu(); return true; }
  if (s == "cuda") { out = Device::cuda(0); return true; }
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.find_first_not_of("0123456789", 5) == std::string::npos) {
    out = Device::cuda(std::stoi(s.substr(5)));
    return true;
  }
  return false;
}

}  // namespace

Runner add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  struct Opts {
    std::string model, host = "127.0.0.1", device = "auto", served_model_name;
    int port = 8000, max_batch = 256, max_model_len = 0;
    bool enable_sleep_mode = false;
    uint64_t kv_cache_bytes = 0, seed = 0;
    double gpu_memory_utilization = 0.9;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("--model", o->model, "Model folder (config.json + *.safetensors) or preset")
      ->required();
  sub->add_option("--host", o->host, "Address to bind (default 127.0.0.1: local clients only)");
  sub->add_option("--port", o->port, "Port (0 = any free port; the chosen one is printed)")
      ->check(CLI::Range(0, 65535));
  sub->add_flag("--enable-sleep-mode", o->enable_sleep_mode,
                "Allow sleep/wake; with SIESTA_SERVER_DEV_MODE=1 the dev endpoints /sleep, "
                "/wake_up, /is_sleeping, /reset_prefix_cache exist");
  sub->add_option("--device", o->device, "auto (a GPU when there is one), cpu, cuda or cuda:N");
  sub->add_option("--max-batch", o->max_batch, "Sequences per engine step")->check(CLI::Range(1, 1 << 16));
  sub->add_option("--max-model-len", o->max_model_len, "Prompt + output tokens (0 = the model's)")
      ->check(CLI::NonNegativeNumber);
  auto* kv = sub->add_option("--kv-cache-bytes", o->kv_cache_bytes,
                             "KV cache size in bytes (CPU default: 1 GiB)");
  auto* util = sub->add_option("--gpu-memory-utilization", o->gpu_memory_utilization,
                               "KV cache as this fraction of the memory free after the weights "
                               "(GPU default: 0.9)")
                   ->check(CLI::Range(0.0, 1.0))
                   ->excludes(kv);
  sub->add_option("--served-model-name", o->served_model_name,
                  "Model name clients send (default: the --model value)");
  sub->add_option("--seed", o->seed, "Seed of preset weights and of requests without one");
  return [o, util] {
    infer::EngineOptions eo;
    eo.model = o->model;
    if (!parse_device(o->device, eo.device))
      return usage_error("--device must be auto, cpu, cuda or cuda:N, got '" + o->device + "'");
    eo.max_num_seqs = o->max_batch;
    eo.max_model_len = o->max_model_len;
    eo.kv_cache_bytes = o->kv_cache_bytes;
    // A fraction of all free host memory is far more than a CPU run can use, and a server
    // should not claim most of a shared machine by default.
    if (!eo.device.is_cuda() && eo.kv_cache_bytes == 0 && util->count() == 0)
      eo.kv_cache_bytes = 1ull << 30;
    eo.kv_cache_memory_fraction = o->gpu_memory_utilization;
    eo.seed = o->seed;
    serve::ServerOptions so;
    so.host = o->host;
    so.port = o->port;
    so.enable_sleep_mode = o->enable_sleep_mode;
    const char* dev = std::getenv("SIESTA_SERVER_DEV_MODE");
    so.dev_mode = dev && std::string(dev) == "1";
    so.served_model_name = o->served_model_name;
    if (so.dev_mode && !so.enable_sleep_mode)
      spdlog::warn("SIESTA_SERVER_DEV_MODE=1 without --enable-sleep-mode: no dev endpoints");

    // SIGINT/SIGTERM only write to a pipe; a watcher thread reads it and stops the server.
    // (Blocking the signals instead is not enough: OpenBLAS starts its threads before main,
    // with the signals unblocked, and the default action would kill the process.)
    if (::pipe(g_signal_pipe) != 0) throw std::runtime_error("serve: pipe() failed");
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    // Startup failures (model, KV size, address) are one line on stderr and exit code 1.
    std::unique_ptr<serve::Server> owned;
    try {
      owned = std::make_unique<serve::Server>(eo, so);
      owned->start();
    } catch (const std::exception& e) {
      std::cerr << "siesta serve: error: " << e.what() << std::endl;
      return 1;
    }
    serve::Server& server = *owned;
    std::cout << "siesta serve: model " << o->model << " on " << eo.device.str()
              << ", listening on http://" << o->host << ":" << server.port() << std::endl;
    if (so.enable_sleep_mode && so.dev_mode)
      std::cout << "siesta serve: dev endpoints enabled (/sleep, /wake_up, /is_sleeping, "
                   "/reset_prefix_cache)" << std::endl;
    std::thread watcher([&] {
      unsigned char sig = 0;
      while (::read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
      }
      if (sig != 0) {
        spdlog::info("signal {}: stopping (a second one exits at once)", int(sig));
        server.stop();
      }
    });
    server.run();
    server.stop();
    unsigned char wake = 0;   // run() ended by itself: release the watcher
    (void)!::write(g_signal_pipe[1], &wake, 1);
    watcher.join();
    std::cout << "siesta serve: stopped" << std::endl;
    return 0;
  };
}

}  // namespace siesta::cli
