// `siesta worker` (see siesta/workflows/worker.hpp): the worker process's side of
// runner_remote.hpp.
#include "siesta/workflows/worker.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "runner_options.hpp"
#include "siesta/actors/local_worker.hpp"
#include "siesta/actors/trace.hpp"
#include "siesta/actors/worker_join.hpp"
#include "siesta/comm/host_transport.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

namespace {

// The host transport connects to IPv4 literals; MASTER_ADDR may be a host name.
std::string ipv4_of(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return host;
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
  ::freeaddrinfo(res);
  return buf;
}

std::shared_ptr<comm::Transport> join_transport(const actors::JoinInfo& info,
                                                const WorkerLaunch& l) {
  if (info.world_size == 1) return nullptr;
  if (info.transport == "nccl") {
    comm::NcclUniqueId id{};
    std::memcpy(id.data(), info.nccl_id.bytes.data(), id.size());
    return std::make_shared<comm::NcclTransport>(id, l.rank, info.world_size, l.local_rank);
  }
  comm::HostTransportOptions o;
  o.host = ipv4_of(info.host_addr.empty() ? l.master_addr : info.host_addr);
  o.port = info.host_port;
  o.session_id = info.session_id;
  o.connect_timeout_ms = 60000;   // rank 0 serves once every worker has asked to join
  return comm::HostTransport::join(l.rank, info.world_size, o);
}

// This rank's messages, in a trace file of its own beside the coordinator's (the handlers run
// in this process, so only this process can record their replies and memory).
void open_rank_trace(actors::Tracing& tracing, const std::string& stem, const WorkflowSpec& spec,
                     const RankInfo& me) {
  const std::string file = stem + ".rank-" + std::to_string(me.rank) + ".jsonl";
  try {
    tracing.open(std::make_shared<actors::TraceWriter>(file, trace_header(spec, {me})));
  } catch (const std::exception& e) {
    std::cerr << "siesta worker " << me.rank << ": no trace for this rank (" << e.what()
              << "); the run goes on untraced here\n";
  }
}

}  // namespace

int run_worker(const WorkerLaunch& l) {
  const std::string me = "siesta worker " + std::to_string(l.rank) + "/" +
                         std::to_string(l.world_size);
  const std::string coordinator = l.master_addr + ":" + std::to_string(l.master_port);
  caf::actor_system_config cfg;
  actors::register_types(cfg);
  cfg.load<caf::io::middleman>();
  cfg.set("logger.console", caf::atom("none"));
  // Held by pointer so that its shutdown can run under the bound at the end.
  auto system = std::make_unique<caf::actor_system>(cfg);
  caf::actor_system& sys = *system;
  std::unique_ptr<actors::LocalWorker> worker;
  int code = -1;
  std::string why;
  try {
    auto join = actors::connect_to_coordinator(sys, l.master_addr, l.master_port,
                                               std::chrono::seconds(l.connect_timeout_s));
    caf::scoped_actor self{sys};
    self->monitor(join);
    actors::JoinInfo info;
    std::string err;
    self->request(join, std::chrono::seconds(60), actors::join_atom_v, int32_t(l.rank),
                  int32_t(l.world_size))
        .receive([&](actors::JoinInfo& i) { info = std::move(i); },
                 [&](caf::error& e) { err = sys.render(e); });
    if (!err.empty()) throw std::runtime_error("the coordinator at " + coordinator +
                                               " refused this worker: " + err);

    auto spec = load_workflow_text(info.workflow_yaml, "<workflow from " + coordinator + ">");
    const siesta::Device device =
        info.transport == "nccl" ? siesta::Device::cuda(l.local_rank) : siesta::Device::cpu();
    auto wo = worker_options(spec, device, l.rank);
    wo.transport = join_transport(info, l);
    auto tracing = std::make_shared<actors::Tracing>(nullptr);
    worker = std::make_unique<actors::LocalWorker>(sys, std::move(wo), tracing);

    const RankInfo mine = local_rank_info(l.rank, device, *worker);
    if (!info.trace_stem.empty()) open_rank_trace(*tracing, info.trace_stem, spec, mine);
    actors::JoinedWorker jw{worker->handles(), caf::actor_cast<caf::actor>(self), mine.host,
                            int32_t(mine.pid), mine.device, mine.budget_bytes, mine.free_bytes};
    self->request(join, std::chrono::seconds(60), actors::ready_atom_v, jw)
        .receive([](int32_t) {}, [&](caf::error& e) { err = sys.render(e); });
    if (!err.empty()) throw std::runtime_error("the coordinator did not take this worker: " + err);
    std::cerr << me << ": joined the coordinator at " << coordinator << " (device " << device.str()
              << ", pid " << ::getpid() << ")\n";

    // Serve until the coordinator ends the run, or its process is gone.
    self->receive_while([&] { return code < 0; })(
        [&](actors::done_atom, int32_t c, const std::string& reason) -> int32_t {
          code = c == 0 ? 0 : 1;
          why = c == 0 ? reason : "the coordinator stopped the run: " + reason;
          return int32_t(l.rank);
        },
        [&](caf::down_msg& dm) {
          code = 1;
          why = "lost the coordinator at " + coordinator + " (" + sys.render(dm.reason) +
                "); stopping";
        });
  } catch (const std::exception& e) {
    code = 1;
    why = e.what();
  }
  if (code == 0) {
    // What this rank did, so that a run's log shows every rank took part. The engine is idle:
    // the coordinator ends the run only between requests.
    auto st = worker->engine().stats();
    std::cerr << me << ": the run ended (" << why << "); this rank's engine generated "
              << st.generation_tokens_total << " tokens for " << st.num_requests_finished
              << " sequences\n";
  } else {
    std::cerr << me << ": " << why << "\n";
  }
  worker.reset();   // stops the actors and waits for them
  // Everything of this rank is released now; what is left is CAF's own shutdown in ~actor_system,
  // which can wait forever: now and then (about 1 run in 60 under load) a detached actor's
  // thread sits in private_thread::await_self_destroyed because a reference to the actor (one
  // the coordinator's node held through the middleman) outlives the connection. The process
  // then never exits although the run ended. Bounded: after 5 s of it, exit with the code.
  std::cerr.flush();
  std::mutex mu;
  std::condition_variable cv;
  bool shut_down = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (cv.wait_for(lock, std::chrono::seconds(5), [&] { return shut_down; })) return;
    std::cerr << me << ": CAF's shutdown still waits for an actor after 5 s; exiting anyway\n";
    std::cerr.flush();
    std::_Exit(code);
  });
  system.reset();
  {
    std::lock_guard<std::mutex> lock(mu);
    shut_down = true;
  }
  cv.notify_one();
  watchdog.join();
  return code;
}

}  // namespace siesta::workflows
