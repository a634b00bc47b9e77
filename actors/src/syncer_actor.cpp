// The weight syncer: after training, broadcasts the trainer's weights from the root rank into
// every rank's (woken) engine weight memory, in place, through comm's bucketed protocol, then
// tells its engine actor that the weights are valid again.
//
// The syncer calls its engine directly from its own thread: the coordinator never has an
// engine request in flight during the sync phase, so the engine is not used concurrently.
#include <chrono>

#include "siesta/actors/worker_actors.hpp"
#include "siesta/comm/transport.hpp"
#include "siesta/comm/weight_sync.hpp"
#include "siesta/infer/engine.hpp"

namespace siesta::actors {
namespace json = boost::json;

namespace {

SyncReport run_sync(SyncerActorConfig& c, int64_t version) {
  comm::SyncOptions so;
  so.engine_dtype = c.engine->weight_dtype();
  so.bucket_bytes = c.bucket_bytes;
  so.root = c.root;
  std::vector<comm::NamedTensor> dst;
  for (auto& [name, view] : c.engine->weight_destinations()) dst.push_back({name, view});
  comm::WeightReceiver receiver(*c.transport, std::move(dst), so);
  comm::SyncStats st;
  if (c.transport->rank() == c.root) {
    if (!c.trainer)
      throw std::runtime_error("weight sync: rank " + std::to_string(c.root) +
                               " is the broadcast root but hosts no trainer");
    comm::WeightSender sender(*c.transport, so);
    st = sender.send(c.trainer->weights(), &receiver);
  } else {
    st = receiver.receive();
  }
  if (!receiver.weights_valid())
    throw std::runtime_error("weight sync " + std::to_string(version) +
                             " ended without valid weights on rank " +
                             std::to_string(c.transport->rank()));
  c.engine->weights_received();
  return SyncReport{version, st.bytes, st.seconds, st.peak_staging_bytes};
}

}  // namespace

syncer_actor::behavior_type syncer_behavior(syncer_actor::pointer self, SyncerActorConfig cfg) {
  auto name = "syncer/" + std::to_string(cfg.rank);
  auto c = std::make_shared<SyncerActorConfig>(std::move(cfg));
  return {
      [=](sync_atom, int64_t version) -> caf::result<SyncReport> {
        auto scope = c->tracing->begin(self, name, "sync", json::object{{"version", version}});
        SyncReport rep;
        try {
          rep = run_sync(*c, version);
        } catch (const std::exception& e) {
          scope.fail(e.what());
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        scope.ok(json::object{{"bytes", rep.bytes}, {"seconds", rep.seconds},
                              {"peak_staging_bytes", rep.peak_staging_bytes}});
        // The engine's lifecycle learns the weights are valid through its own mailbox, so the
        // trace shows the transition where replay expects it.
        auto rp = self->make_response_promise<SyncReport>();
        self->request(c->engine_handle, std::chrono::minutes(1), sync_atom_v, version)
            .then([=](const EngineStatus&) mutable { rp.deliver(rep); },
                  [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
  };
}

}  // namespace siesta::actors
