#include "siesta/actors/local_worker.hpp"

#include <filesystem>

#include "siesta/actors/memory_actor.hpp"
#include "siesta/actors/worker_actors.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/comm/host_transport.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/presets.hpp"

namespace siesta::actors {

namespace {

std::shared_ptr<comm::Transport> world_of_one(Device device) {
  if (device.is_cuda())
    return std::make_shared<comm::NcclTransport>(comm::make_unique_id(), 0, 1, device.index);
  return comm::HostTransport::serve(comm::HostListener(), 1, comm::HostTransportOptions{});
}

}  // namespace

LocalWorker::LocalWorker(caf::actor_system& sys, WorkerOptions o, std::shared_ptr<Tracing> tracing)
    : sys_(sys), opts_(std::move(o)), tracing_(std::move(tracing)) {
  allocator::PoolOptions po;
  po.device = opts_.device;
  if (opts_.pool_chunk_bytes) po.chunk_bytes = opts_.pool_chunk_bytes;
  pool_ = allocator::Pool::create(po);

  const bool root = opts_.rank == opts_.sync_root;
  if (root && !opts_.host_trainer)
    throw std::invalid_argument("rank " + std::to_string(opts_.rank) +
                                " is the weight-sync root, so it must host the trainer");
  if (opts_.trainer_backend) {
    backend_ = opts_.trainer_backend;
  } else if (opts_.host_trainer) {
    task_ = std::make_unique<train::Task>(opts_.task);
    ops_ = kernels::make_ops(opts_.device);
    auto cfg = model::resolve_model_config(opts_.model);
    trainer_ = std::make_unique<train::Trainer>(cfg, opts_.trainer, *ops_, *pool_);
    if (std::filesystem::is_directory(opts_.model))
      trainer_->load_model_folder(opts_.model);
    else
      trainer_->init_random(opts_.seed);
    backend_ = make_builtin_trainer(*trainer_, *pool_, *task_, opts_.builtin);
  }

  auto eo = opts_.engine;
  eo.model = opts_.model;
  eo.device = opts_.device;
  eo.pool = pool_;
  engine_ = std::make_shared<infer::InferenceEngine>(std::move(eo));

  transport_ = opts_.transport ? opts_.transport : world_of_one(opts_.device);

  const std::string r = std::to_string(opts_.rank);
  auto pool = pool_;
  auto used = [pool] { return pool->device_memory().used_bytes; };
  tracing_->set_memory_probe(r, [pool] {
    auto m = pool->device_memory();
    return boost::json::object{{"device_used", m.used_bytes}, {"device_free", m.free_bytes}};
  });

  handles_.rank = opts_.rank;
  uint64_t capacity = opts_.memory_capacity_bytes;
  if (!capacity) capacity = pool_->device_memory().total_bytes;
  handles_.memory = sys.spawn(memory_manager, MemoryManagerConfig{opts_.rank, capacity, used, tracing_});
  handles_.engine = sys.spawn<caf::detached>(engine_behavior, EngineActorConfig{opts_.rank, engine_, tracing_});
  if (backend_)
    handles_.trainer =
        sys.spawn<caf::detached>(trainer_behavior, TrainerActorConfig{opts_.rank, backend_, tracing_});
  SyncerActorConfig sc;
  sc.rank = opts_.rank;
  sc.root = opts_.sync_root;
  sc.trainer = backend_;
  sc.engine = engine_;
  sc.transport = transport_;
  sc.engine_handle = handles_.engine;
  sc.bucket_bytes = opts_.sync_bucket_bytes;
  sc.tracing = tracing_;
  handles_.syncer = sys.spawn<caf::detached>(syncer_behavior, std::move(sc));

  tracing_->name(handles_.memory.address(), "memory/" + r);
  tracing_->name(handles_.engine.address(), "engine/" + r);
  if (handles_.trainer) tracing_->name(handles_.trainer.address(), "trainer/" + r);
  tracing_->name(handles_.syncer.address(), "syncer/" + r);
  spawned_ = {caf::actor_cast<caf::actor>(handles_.memory), caf::actor_cast<caf::actor>(handles_.engine),
              caf::actor_cast<caf::actor>(handles_.syncer)};
  if (handles_.trainer) spawned_.push_back(caf::actor_cast<caf::actor>(handles_.trainer));
}

void LocalWorker::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& a : spawned_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

LocalWorker::~LocalWorker() {
  stop();
  // The detached actors use the engine, trainer and pool: wait until each has terminated.
  caf::scoped_actor self{sys_};
  for (auto& a : spawned_) self->monitor(a);
  size_t down = 0;
  self->receive_while([&] { return down < spawned_.size(); })(
      [&](caf::down_msg&) { ++down; });
  handles_ = {};
  spawned_.clear();
}

}  // namespace siesta::actors
