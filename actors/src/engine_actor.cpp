// The engine actor: generation, sleep and wake on an InferenceEngine, guarded by the same
// EngineLifecycle that `siesta replay` re-drives, so recorded replies can be re-derived.
#include <chrono>

#include "siesta/actors/engine_lifecycle.hpp"
#include "siesta/actors/worker_actors.hpp"
#include "siesta/infer/engine.hpp"

namespace siesta::actors {
namespace json = boost::json;

namespace {

EngineStatus status_of(infer::InferenceEngine& e) {
  auto st = e.stats();
  EngineStatus s;
  s.is_sleeping = st.sleep.is_sleeping();
  s.weights_awake = st.sleep.weights_awake;
  s.kv_awake = st.sleep.kv_cache_awake;
  s.weights_valid = st.sleep.weights_valid;
  s.sleep_level = st.sleep.level;
  s.weights_bytes = st.weights_bytes + st.buffers_bytes;
  s.kv_cache_bytes = st.kv_cache_bytes + st.workspace_bytes;
  // What the engine really holds on the device now (mapped, not merely reserved addresses).
  auto& pool = e.pool();
  for (const auto& t : pool.stats().tags)
    if (t.tag == "weights" || t.tag == "kv_cache" || t.tag == "buffers" || t.tag == "infer_workspace")
      s.device_used_bytes += t.mapped_bytes;
  return s;
}

// The part of the status the lifecycle state machine determines (what replay compares).
json::object lifecycle_json(const EngineStatus& s) {
  return json::object{{"is_sleeping", s.is_sleeping}, {"weights_awake", s.weights_awake},
                      {"kv_awake", s.kv_awake}, {"weights_valid", s.weights_valid},
                      {"sleep_level", s.sleep_level}};
}

}  // namespace

engine_actor::behavior_type engine_behavior(engine_actor::pointer self, EngineActorConfig cfg) {
  auto name = "engine/" + std::to_string(cfg.rank);
  auto eng = cfg.engine;
  auto tr = cfg.tracing;
  auto lc = std::make_shared<EngineLifecycle>();
  return {
      [=](generate_atom, const RolloutRequest& req) -> caf::result<RolloutBatch> {
        json::object args{{"step", req.step}, {"prompts", req.prompts.size()}, {"n", req.n},
                          {"temperature", req.temperature}, {"max_new_tokens", req.max_new_tokens}};
        return traced_call<RolloutBatch>(
            tr->begin(self, name, "generate", std::move(args)),
            [&] {
              lc->check_can_generate();
              auto t0 = std::chrono::steady_clock::now();
              infer::SamplingParams sp;
              sp.n = req.n;
              sp.temperature = req.temperature;
              sp.top_p = req.top_p;
              sp.max_tokens = req.max_new_tokens;
              sp.seed = req.seed;
              sp.logprobs = true;
              auto outs = eng->generate_text(req.prompts, sp);
              RolloutBatch b;
              b.step = req.step;
              for (size_t p = 0; p < outs.size(); ++p)
                for (auto& c : outs[p].outputs) {
                  b.generated_tokens += int64_t(c.token_ids.size());
                  b.rollouts.push_back(Rollout{int32_t(p), outs[p].prompt_token_ids, c.token_ids,
                                               c.logprobs, c.text, 0.f});
                }
              b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
              return b;
            },
            [](const RolloutBatch& b) {
              return json::object{{"rollouts", b.rollouts.size()}, {"tokens", b.generated_tokens}};
            });
      },
      [=](sleep_atom, int32_t level) -> caf::result<EngineStatus> {
        return traced_call<EngineStatus>(
            tr->begin(self, name, "sleep", json::object{{"level", level}}),
            [&] {
              EngineLifecycle next = *lc;
              next.sleep(level);   // refuses what vLLM would make a no-op: a protocol error here
              eng->sleep(level);
              *lc = next;
              return status_of(*eng);
            },
            lifecycle_json);
      },
      [=](wake_atom, const std::vector<std::string>& tags) -> caf::result<EngineStatus> {
        json::array t;
        for (auto& x : tags) t.emplace_back(x);
        return traced_call<EngineStatus>(
            tr->begin(self, name, "wake", json::object{{"tags", t}}),
            [&] {
              EngineLifecycle next = *lc;
              next.wake(tags);
              eng->wake_up(tags);   // an OOM throws here: the engine stays asleep, lc unchanged
              *lc = next;
              return status_of(*eng);
            },
            lifecycle_json);
      },
      [=](sync_atom, int64_t version) -> caf::result<EngineStatus> {
        return traced_call<EngineStatus>(
            tr->begin(self, name, "receive_weights", json::object{{"version", version}}),
            [&] {
              lc->weights_loaded();
              return status_of(*eng);
            },
            lifecycle_json);
      },
      [=](status_atom) -> EngineStatus { return status_of(*eng); },
  };
}

}  // namespace siesta::actors
