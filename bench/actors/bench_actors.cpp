// Actor messaging and the orchestration overhead of an RL step, each against a limit measured in
// the same run:
//  (a) request/response between two typed actors of one actor system: round-trip latency
//      (p50/p99) actor->actor and scoped_actor->actor (the coordinator's blocking path), and
//      requests/s with a window in flight; limits: the same exchange between two plain threads
//      (spinning on an atomic; mutex + condition variable; two mutex+condvar queues).
//  (b) the same over CAF's middleman to an actor published on 127.0.0.1 by another process;
//      limits: 16-byte messages over a raw TCP socket to the same process.
//  (c) real colocated RL steps (LocalWorker + Coordinator; tiny on the CPU, small on a GPU):
//      the share of the step's wall time not spent inside the engine, trainer and syncer
//      handlers, against the target of 0.5 %, and against messages x the measured blocking RTT.
// --quick: fewer round trips and steps (CI); --cpu: part (c) on the CPU even with a GPU.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "floors.hpp"
#include "harness.hpp"
#include "siesta/actors/protocol.hpp"
#include "siesta/kernels/device.hpp"
#include "step_overhead.hpp"

using namespace siesta;
namespace floors = siesta::bench::floors;

namespace {

using Clock = std::chrono::steady_clock;
using echo_atom = caf::atom_constant<caf::atom("echo")>;
using echo_actor = caf::typed_actor<caf::replies_to<echo_atom, int64_t>::with<int64_t>>;

echo_actor::behavior_type echo_behavior() {
  return {[](echo_atom, int64_t x) { return x; }};
}

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

struct Sample {
  std::vector<double> rtt_us;   // sequential round trips
  double per_s = 0;             // pipelined requests/s
  int64_t wrong = 0;            // replies that were not the request's value, or errors
};

// n sequential requests from an event-based actor, each sent when the previous reply arrives.
Sample actor_rtt(caf::actor_system& sys, const echo_actor& server, int n) {
  auto res = std::make_shared<Sample>();
  std::promise<void> done;
  auto fut = done.get_future();
  sys.spawn([=, &done](caf::event_based_actor* self) {
    auto next = std::make_shared<std::function<void(int64_t)>>();
    *next = [=, &done](int64_t i) {
      if (i == n) {
        done.set_value();
        return;
      }
      auto t0 = Clock::now();
      self->request(server, caf::infinite, echo_atom::value, i)
          .then([=](int64_t x) {
                  res->rtt_us.push_back(us_since(t0));
                  res->wrong += x != i;
                  (*next)(i + 1);
                },
                [=, &done](caf::error&) {
                  res->wrong += n - i;
                  done.set_value();
                });
    };
    (*next)(0);
  });
  fut.wait();
  return *res;
}

// n sequential blocking requests from a scoped_actor (what the coordinator does).
Sample scoped_rtt(caf::actor_system& sys, const echo_actor& server, int n) {
  Sample s;
  caf::scoped_actor self{sys};
  for (int64_t i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    self->request(server, caf::infinite, echo_atom::value, i)
        .receive([&](int64_t x) { s.wrong += x != i; }, [&](caf::error&) { ++s.wrong; });
    s.rtt_us.push_back(us_since(t0));
  }
  return s;
}

// n requests from an event-based actor with `window` in flight.
Sample actor_pipelined(caf::actor_system& sys, const echo_actor& server, int n, int window) {
  auto res = std::make_shared<Sample>();
  std::promise<void> done;
  auto fut = done.get_future();
  auto t0 = Clock::now();
  sys.spawn([=, &done](caf::event_based_actor* self) {
    auto sent = std::make_shared<int64_t>(0), got = std::make_shared<int64_t>(0);
    auto send = std::make_shared<std::function<void()>>();
    *send = [=, &done] {
      const int64_t i = (*sent)++;
      self->request(server, caf::infinite, echo_atom::value, i)
          .then([=, &done](int64_t x) {
                  res->wrong += x != i;
                  if (++*got == n) done.set_value();
                  else if (*sent < n) (*send)();
                },
                [=, &done](caf::error&) {
                  ++res->wrong;
                  if (++*got == n) done.set_value();
                  else if (*sent < n) (*send)();
                });
    };
    for (int k = 0; k < std::min(n, window); ++k) (*send)();
  });
  fut.wait();
  res->per_s = n / (us_since(t0) * 1e-6);
  return *res;
}

struct Counts {
  int rtt = 50000, scoped = 10000, pipelined = 100000, window = 256;
  int remote_rtt = 10000, remote_pipelined = 50000;
  int warmup_steps = 2, steps = 10;
};

void latency_row(bench::Table& t, const std::string& path, Sample s, std::vector<double> floor_us,
                 const std::string& floor_name) {
  const double p50 = floors::quantile(s.rtt_us, 0.5), p99 = floors::quantile(s.rtt_us, 0.99);
  const double f50 = floors::quantile(floor_us, 0.5);
  t.row({{"what", std::string("round trip")}, {"path", path}, {"n", int64_t(s.rtt_us.size())},
         {"p50_us", p50}, {"p99_us", p99}, {"limit_is", floor_name}},
        p50, f50, "us", s.wrong ? std::to_string(s.wrong) + " wrong replies" : "ok");
}

void rate_row(bench::Table& t, const std::string& path, const Sample& s, int n, int window,
              double floor_per_s, const std::string& floor_name) {
  t.row({{"what", std::string("requests/s")}, {"path", path}, {"n", int64_t(n)},
         {"p50_us", std::string("-")}, {"p99_us", std::string("-")},
         {"limit_is", floor_name + ", window " + std::to_string(window)}},
        s.per_s, floor_per_s, "req/s", s.wrong ? std::to_string(s.wrong) + " wrong replies" : "ok");
}

// The far side of part (b): a CAF system with the echo actor published on 127.0.0.1 and a raw
// TCP echo server; writes both ports to `out`, serves until `in` closes (the parent is done).
[[noreturn]] void remote_side(int out, int in) {
  int code = 0;
  try {
    floors::TcpEchoServer tcp;
    std::thread([&tcp] { tcp.serve_forever(); }).detach();
    caf::actor_system_config cfg;
    actors::register_types(cfg);
    cfg.load<caf::io::middleman>();
    cfg.set("scheduler.max-threads", size_t(2));
    caf::actor_system sys{cfg};
    auto echo = sys.spawn(echo_behavior);
    auto port = sys.middleman().publish(echo, 0, "127.0.0.1");
    if (!port) throw std::runtime_error("publish on 127.0.0.1: " + sys.render(port.error()));
    uint16_t ports[2] = {*port, tcp.port()};
    if (::write(out, ports, sizeof ports) != sizeof ports) throw std::runtime_error("pipe write");
    char c;
    while (::read(in, &c, 1) > 0) {
    }
    caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  } catch (const std::exception& e) {
    std::cerr << "bench_actors (remote side): " << e.what() << "\n";
    code = 1;
  }
  ::_exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  auto o = bench::parse_options(argc, argv, "bench_actors",
                                "actor request/response latency and req/s (in-process, loopback) "
                                "and RL-step orchestration overhead (target < 0.5 %)");
  bool force_cpu = false;
  for (const auto& a : o.rest) {
    if (a == "--cpu") force_cpu = true;
    else {
      std::cerr << "bench_actors: unknown option " << a << " (allowed: --cpu, plus the harness's)\n";
      return 2;
    }
  }
  Counts n;
  if (o.quick) n = {20000, 5000, 50000, 256, 5000, 20000, 1, 5};

  // The remote side is forked before this process starts any CAF thread.
  int to_parent[2], to_child[2];
  if (::pipe(to_parent) != 0 || ::pipe(to_child) != 0) return 1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(to_parent[0]);
    ::close(to_child[1]);
    remote_side(to_parent[1], to_child[0]);
  }
  ::close(to_parent[1]);
  ::close(to_child[0]);
  uint16_t ports[2] = {0, 0};
  const bool remote_ok = ::read(to_parent[0], ports, sizeof ports) == sizeof ports;

  int failures = 0;
  double scoped_p50_us = 0;
  {
    bench::Table t("actors_messaging", o);
    caf::actor_system_config cfg;
    actors::register_types(cfg);
    cfg.load<caf::io::middleman>();
    // As the runtime sets it (caf-0.17.md section 7): more threads than cores slows the
    // blocking round trip several-fold on a small box.
    cfg.set("scheduler.max-threads", size_t(std::clamp(std::thread::hardware_concurrency(), 1u, 4u)));
    caf::actor_system sys{cfg};
    auto echo = sys.spawn(echo_behavior);

    // (a) in-process
    latency_row(t, "actor->actor, one system", actor_rtt(sys, echo, n.rtt),
                floors::spin_pingpong_us(n.rtt), "2 threads, spin on an atomic");
    auto scoped = scoped_rtt(sys, echo, n.scoped);
    auto scoped_copy = scoped.rtt_us;
    scoped_p50_us = floors::quantile(scoped_copy, 0.5);
    latency_row(t, "scoped_actor->actor (coordinator)", scoped, floors::condvar_pingpong_us(n.scoped),
                "2 threads, mutex + condvar");
    rate_row(t, "actor->actor, one system", actor_pipelined(sys, echo, n.pipelined, n.window),
             n.pipelined, n.window, floors::queue_echo_per_s(n.pipelined, n.window),
             "echo thread via 2 mutex+condvar queues");

    // (b) over the middleman, 127.0.0.1, another process
    if (!remote_ok) {
      t.note("loopback rows missing: the remote process did not start");
      ++failures;
    } else {
      auto remote = sys.middleman().remote_actor<echo_actor>("127.0.0.1", ports[0]);
      if (!remote) {
        t.note("loopback rows missing: remote_actor failed: " + sys.render(remote.error()));
        ++failures;
      } else {
        latency_row(t, "actor->remote actor, 127.0.0.1", actor_rtt(sys, *remote, n.remote_rtt),
                    floors::tcp_pingpong_us(ports[1], n.remote_rtt), "raw TCP 16 B, same peer");
        latency_row(t, "scoped_actor->remote actor, 127.0.0.1", scoped_rtt(sys, *remote, n.remote_rtt),
                    floors::tcp_pingpong_us(ports[1], n.remote_rtt), "raw TCP 16 B, same peer");
        rate_row(t, "actor->remote actor, 127.0.0.1",
                 actor_pipelined(sys, *remote, n.remote_pipelined, n.window), n.remote_pipelined,
                 n.window, floors::tcp_pipelined_per_s(ports[1], n.remote_pipelined, n.window),
                 "raw TCP 16 B");
      }
    }
    t.note("round-trip rows: achieved = p50 in us, limit = p50 of the plain exchange named in "
           "limit_is (ratio = how many times the floor; lower is better)");
    t.note("requests/s rows: one request/response = one message each way; higher is better");
    t.note("actor->actor can beat the two-thread floor: CAF often runs both actors on one "
           "scheduler thread, so no cross-core handoff happens");
    t.note("scheduler threads: " + std::to_string(std::clamp(std::thread::hardware_concurrency(), 1u, 4u)) +
           ", hardware threads: " + std::to_string(std::thread::hardware_concurrency()) +
           "; remote: CAF 0.17 middleman (BASP over TCP) to a second process");
    caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
    failures += t.failures();
  }
  ::close(to_child[1]);   // the remote side shuts down
  int status = 0;
  ::waitpid(pid, &status, 0);

  // (c) orchestration overhead of real RL steps: a toy step and, on a GPU, a real-sized one
  {
    bench::Table t("actors_step_overhead", o);
    const bool gpu = !force_cpu && !o.quick && kernels::cuda_available();
    std::vector<std::pair<std::string, bench::StepShape>> shapes;
    if (gpu) {
      shapes.emplace_back("sorting answers", bench::gpu_short_step());
      shapes.emplace_back("256-token rollouts", bench::gpu_long_step());
    } else {
      shapes.emplace_back("sorting answers", bench::cpu_step());
    }
    for (const auto& [label, shape] : shapes) {
      try {
        const bool long_step = shape.max_new_tokens > 64;
        auto r = bench::measure_step_overhead(gpu, shape, long_step ? 1 : n.warmup_steps,
                                              long_step ? 3 : n.steps);
        auto cols = [&](const std::string& what) -> std::vector<std::pair<std::string, bench::Value>> {
          return {{"what", what},         {"device", r.device},   {"preset", r.preset},
                  {"rollouts", label},    {"steps", int64_t(r.steps)}, {"step_ms", r.step_ms},
                  {"work_ms", r.work_ms}, {"memory_mgr_ms", r.memory_ms},
                  {"overhead_ms", r.overhead_ms}, {"messages", r.messages}};
        };
        t.row(cols("overhead % of step vs target"), r.overhead_pct, 0.5, "%", r.check);
        t.row(cols("overhead ms vs messages x RTT"), r.overhead_ms,
              r.messages * scoped_p50_us * 1e-3, "ms", r.check);
        t.note(std::string("target: orchestration < 0.5 % of the step: ") +
               (r.overhead_pct < 0.5 ? "met" : "NOT met") + " (" + std::to_string(r.overhead_pct) +
               " % on " + r.device + ", " + r.preset + ", " + label + ")");
      } catch (const std::exception& e) {
        t.note(std::string("RL steps (") + label + ") failed: " + e.what());
        ++failures;
      }
    }
    t.note("overhead = step wall time - time inside engine/trainer/syncer handlers (trace dur_ns); "
           "it includes the memory manager's handlers, the coordinator's own code and writing "
           "the trace, so it is an upper bound on the messaging cost");
    t.note("second row's limit: messages handled per step x the scoped_actor round trip (p50) "
           "measured above");
    failures += t.failures();
  }
  return failures || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}
