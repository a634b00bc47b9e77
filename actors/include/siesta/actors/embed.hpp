// The one header a training application includes to embed siesta: it owns the CAF actor system,
// one LocalWorker (engine, memory manager, weight syncer and a trainer actor that drives the
// application's own TrainerBackend), the task that scores rollouts, and a Coordinator that runs
// the colocated RL steps — built and torn down in the order CAF needs:
//
//   siesta::actors::WorkerOptions w;            // model preset/folder, device, engine, task
//   w.trainer_backend = std::make_shared<MyTrainer>(...);
//   siesta::actors::Runtime rt(std::move(w));
//   rt.coordinator().start();
//   rt.coordinator().begin_stage(stage);
//   for (int s = 1; s <= n; ++s) rt.coordinator().grpo_step(s, rollout_options);
//
// Header-only on purpose: it only wires public pieces together (see examples/embed_trainer).
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include <caf/all.hpp>

#include "siesta/actors/coordinator.hpp"
#include "siesta/actors/local_worker.hpp"
#include "siesta/actors/protocol.hpp"
#include "siesta/actors/step_protocol.hpp"
#include "siesta/actors/trace.hpp"
#include "siesta/actors/tracing.hpp"
#include "siesta/actors/trainer_backend.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/train/task.hpp"

namespace siesta::actors {

struct RuntimeOptions {
  StepPlan plan;                        // default: sleep level 2, weights first, trainer offloaded
  // CAF scheduler threads; 0 = min(hardware threads, 4). The engine, trainer and syncer actors
  // are detached (their own threads), so orchestration needs few (caf-0.17.md section 7).
  size_t scheduler_threads = 0;
  std::filesystem::path trace_file;     // JSON Lines message trace; empty = none
  std::chrono::milliseconds timeout = std::chrono::minutes(30);   // per actor request
};

class Runtime {
 public:
  // Builds the worker (throws what the pool, engine or trainer construction throws, and
  // train::TrainError for an invalid task spec).
  explicit Runtime(WorkerOptions worker, RuntimeOptions options = {})
      : task_(worker.task), tracing_(std::make_shared<Tracing>(nullptr)) {
    register_types(cfg_);
    size_t threads = options.scheduler_threads;
    if (threads == 0) threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
    cfg_.set("scheduler.max-threads", threads);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    const int rank = worker.rank;
    const uint64_t capacity = worker.memory_capacity_bytes;
    const uint64_t seed = worker.seed;
    const std::string model = worker.model;
    worker_ = std::make_unique<LocalWorker>(*sys_, std::move(worker), tracing_);
    if (!options.trace_file.empty()) {
      const uint64_t budget = capacity ? capacity : worker_->pool().device_memory().total_bytes;
      tracing_->open(std::make_shared<TraceWriter>(
          options.trace_file,
          boost::json::object{
              {"config", boost::json::object{{"embedded", true}, {"model", model},
                                             {"task", task_.description()}}},
              {"seeds", boost::json::object{{"trainer", seed}}},
              {"devices", boost::json::array{boost::json::object{{"rank", rank},
                                                                 {"budget_bytes", budget}}}}}));
    }
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
    coordinator_ = std::make_unique<Coordinator>(*self_, std::vector<WorkerHandles>{worker_->handles()},
                                                 options.plan, tracing_, task_, options.timeout);
  }

  // Coordinator and its scoped actor first, then the worker's actors (awaited), then the system.
  ~Runtime() {
    coordinator_.reset();
    self_.reset();
    worker_.reset();
    sys_.reset();
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  Coordinator& coordinator() { return *coordinator_; }
  LocalWorker& worker() { return *worker_; }
  caf::actor_system& system() { return *sys_; }
  const train::Task& task() const { return task_; }
  const std::shared_ptr<Tracing>& tracing() const { return tracing_; }

 private:
  caf::actor_system_config cfg_;   // before sys_: the system keeps a reference to it
  train::Task task_;
  std::shared_ptr<Tracing> tracing_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<LocalWorker> worker_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::unique_ptr<Coordinator> coordinator_;
};

}  // namespace siesta::actors
