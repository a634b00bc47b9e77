// The trainer actor: translates messages into calls on a TrainerBackend.
#include "siesta/actors/worker_actors.hpp"

namespace siesta::actors {
namespace json = boost::json;

namespace {
json::object bytes_json(uint64_t n) { return json::object{{"bytes", n}}; }

json::object report_json(const TrainReport& r) {
  return json::object{{"step", r.step}, {"loss", r.loss}, {"grad_norm", r.grad_norm},
                      {"lr", r.lr}, {"tokens", r.tokens}, {"seconds", r.seconds}};
}

}  // namespace

trainer_actor::behavior_type trainer_behavior(trainer_actor::pointer self, TrainerActorConfig cfg) {
  auto name = "trainer/" + std::to_string(cfg.rank);
  auto b = cfg.backend;
  auto tr = cfg.tracing;
  return {
      [=](train_atom, const RolloutBatch& batch) -> caf::result<TrainReport> {
        return traced_call<TrainReport>(
            tr->begin(self, name, "train",
                      json::object{{"step", batch.step}, {"rollouts", batch.rollouts.size()}}),
            [&] { return b->train(batch); }, report_json);
      },
      [=](sft_atom, int64_t step) -> caf::result<TrainReport> {
        return traced_call<TrainReport>(tr->begin(self, name, "sft", json::object{{"step", step}}),
                                        [&] { return b->sft(step); }, report_json);
      },
      [=](offload_atom, bool keep_weights) -> caf::result<uint64_t> {
        return traced_call<uint64_t>(
            tr->begin(self, name, "offload", json::object{{"keep_weights", keep_weights}}),
            [&] { return b->offload(keep_weights); }, bytes_json);
      },
      [=](restore_atom) -> caf::result<uint64_t> {
        return traced_call<uint64_t>(tr->begin(self, name, "restore", json::object{}),
                                     [&] { return b->restore(); }, bytes_json);
      },
      [=](ckpt_atom, const std::string& folder) -> caf::result<std::string> {
        return traced_call<std::string>(
            tr->begin(self, name, "checkpoint", json::object{{"folder", folder}}),
            [&] { return b->checkpoint(folder); },
            [](const std::string& f) { return json::object{{"file", f}}; });
      },
      [=](stage_atom, const TrainStage& st) -> caf::result<int64_t> {
        return traced_call<int64_t>(
            tr->begin(self, name, "stage",
                      json::object{{"kind", st.kind}, {"lr", st.lr}, {"group_size", st.group_size}}),
            [&] {
              b->begin_stage(st);
              return int64_t(0);
            },
            [](int64_t) { return json::object{}; });
      },
      [=](resume_atom, const std::string& file) -> caf::result<int64_t> {
        return traced_call<int64_t>(tr->begin(self, name, "resume", json::object{{"file", file}}),
                                    [&] { return b->resume(file); },
                                    [](int64_t s) { return json::object{{"step", s}}; });
      },
  };
}

}  // namespace siesta::actors
