// The colocated RL step over real actors: a worker (pool, engine, trainer on the tiny preset,
// CPU) driven by the coordinator. Pins the message order, the memory manager's refusal of a
// wake that does not fit, trace -> replay without divergence, and a failing actor call that
// leaves the engine recoverable.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "siesta/actors/coordinator.hpp"
#include "siesta/actors/local_worker.hpp"
#include "siesta/actors/replay.hpp"
#include "siesta/actors/trace.hpp"

using namespace siesta;
using namespace siesta::actors;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("siesta_step_" + std::to_string(::getpid()) + "_" + name);
}

WorkerOptions tiny_worker() {
  WorkerOptions w;
  w.model = "tiny";
  w.device = Device::cpu();
  w.task = train::TaskSpec{.kind = train::TaskKind::Reversal, .min_len = 2, .max_len = 3};
  w.engine.max_num_seqs = 16;
  w.engine.max_model_len = 32;
  w.engine.kv_cache_bytes = 4ull << 20;
  w.trainer.micro_batch_rows = 16;
  w.trainer.max_seq_len = 32;
  w.seed = 7;
  return w;
}

struct Rig {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<Tracing> tracing;
  std::unique_ptr<LocalWorker> worker;
  fs::path trace_file;

  explicit Rig(const std::string& name, WorkerOptions w = tiny_worker()) {
    register_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    tracing = std::make_shared<Tracing>(nullptr);
    worker = std::make_unique<LocalWorker>(*sys, std::move(w), tracing);
    trace_file = temp_path(name + ".jsonl");
    auto cap = worker->pool().device_memory().total_bytes;
    tracing->open(std::make_shared<TraceWriter>(
        trace_file, json::object{{"config", "test"},
                                 {"devices", json::array{json::object{{"rank", 0}, {"budget_bytes", cap}}}}}));
  }
  ~Rig() {
    worker.reset();
    sys.reset();
    fs::remove(trace_file);
  }
};

RolloutOptions small_rollout() {
  RolloutOptions ro;
  ro.prompts_per_step = 2;
  ro.group_size = 4;
  ro.max_new_tokens = 5;
  ro.seed = 3;
  return ro;
}

TrainStage grpo_stage() {
  TrainStage s;
  s.kind = "grpo";
  s.lr = s.min_lr = 1e-3;
  s.group_size = 4;
  return s;
}

}  // namespace

TEST(StepActors, Level2StepRunsInProtocolOrderAndReplaysWithoutDivergence) {
  Rig rig("order");
  {
    caf::scoped_actor self{*rig.sys};
    StepPlan plan;   // level 2, weights first, trainer offloaded
    train::Task task(train::TaskSpec{.kind = train::TaskKind::Reversal, .min_len = 2, .max_len = 3});
    Coordinator c(self, {rig.worker->handles()}, plan, rig.tracing, task);
    c.start();
    c.begin_stage(grpo_stage());
    auto rec = c.grpo_step(1, small_rollout());
    ASSERT_EQ(rec.phase_ms.size(), plan.phases().size());
    for (size_t i = 0; i < rec.phase_ms.size(); ++i) EXPECT_EQ(rec.phase_ms[i].first, plan.phases()[i]);
    EXPECT_EQ(rec.generated_tokens > 0, true);
    EXPECT_GT(rec.trained_tokens, 0);
    EXPECT_GE(rec.reward_mean, 0.0);
    // While the trainer trained, the level-2 engine held (almost) nothing on the device.
    EXPECT_LT(rec.engine_held_while_training, rig.worker->engine().stats().weights_bytes / 2);
    auto st = rig.worker->engine().sleep_state();
    EXPECT_FALSE(st.is_sleeping());
    EXPECT_TRUE(st.weights_valid);
    // A second step runs on the synced weights.
    auto rec2 = c.grpo_step(2, small_rollout());
    EXPECT_GT(rec2.generated_tokens, 0);
  }
  auto trace = read_trace(rig.trace_file);
  // The engine and trainer messages of one step, in the order the protocol prescribes.
  std::vector<std::string> seen;
  for (const auto& e : trace.events)
    if (e.step == 1 && (e.to == "engine/0" || e.to == "trainer/0" || e.to == "syncer/0"))
      seen.push_back(e.to + " " + e.type);
  std::vector<std::string> want = {"engine/0 generate", "engine/0 sleep",   "trainer/0 restore",
                                   "trainer/0 train",   "trainer/0 offload", "engine/0 wake",
                                   "syncer/0 sync",     "engine/0 receive_weights",
                                   "trainer/0 offload", "engine/0 wake"};
  EXPECT_EQ(seen, want);

  std::ostringstream out;
  ReplayOptions ro;
  ro.out = &out;
  auto r = replay_trace(rig.trace_file, ro);
  EXPECT_FALSE(r.divergence.has_value()) << out.str();
  EXPECT_EQ(r.steps, 2);
  EXPECT_GT(r.checked, 10);
}

TEST(StepActors, MemoryManagerRefusesAWakeThatDoesNotFitAndNothingIsLost) {
  auto w = tiny_worker();
  w.memory_capacity_bytes = 64ull << 20;
  Rig rig("budget", w);
  caf::scoped_actor self{*rig.sys};
  auto h = rig.worker->handles();
  train::Task task(train::TaskSpec{.kind = train::TaskKind::Reversal, .min_len = 2, .max_len = 3});
  StepPlan plan;
  plan.offload_trainer = false;
  Coordinator c(self, {h}, plan, rig.tracing, task);
  c.start();
  c.begin_stage(grpo_stage());
  c.grpo_step(1, small_rollout());
  auto s = rig.worker->engine().stats();
  ASSERT_LT(s.weights_bytes + s.kv_cache_bytes, w.memory_capacity_bytes);
  auto reserve = [&](const std::string& owner, const std::string& tag, uint64_t bytes, auto atom) {
    std::string err;
    self->request(h.memory, std::chrono::seconds(10), atom, MemoryRequest{owner, tag, bytes})
        .receive([](uint64_t) {}, [&](caf::error& e) { err = self->system().render(e); });
    return err;
  };
  // While the engine sleeps in step 2, someone else takes all but half a KV cache beyond the
  // weights: the weights still fit, the KV cache does not.
  std::string hog_err = "not reserved";
  c.on_phase([&](int64_t step, const std::string&, const std::string& phase) {
    if (step == 2 && phase == "wake_weights")
      hog_err = reserve("other", "hog",
                        w.memory_capacity_bytes - s.weights_bytes - s.kv_cache_bytes / 2, reserve_atom_v);
  });
  try {
    c.grpo_step(2, small_rollout());
    FAIL() << "expected the memory manager to refuse the KV wake";
  } catch (const RunError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("memory reserve failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("kv_cache"), std::string::npos) << msg;
    EXPECT_NE(msg.find("other/hog"), std::string::npos) << msg << " (names the holders)";
  }
  ASSERT_EQ(hog_err, "");
  // The refusal happened before the driver was touched: the engine sleeps with valid weights
  // and wakes once the memory is back.
  auto st = rig.worker->engine().sleep_state();
  EXPECT_TRUE(st.weights_awake);
  EXPECT_FALSE(st.kv_cache_awake);
  EXPECT_TRUE(st.weights_valid);
  ASSERT_EQ(reserve("other", "hog", 0, release_atom_v), "");
  std::string err;
  self->request(h.engine, std::chrono::seconds(10), wake_atom_v, std::vector<std::string>{"kv_cache"})
      .receive([](EngineStatus&) {}, [&](caf::error& e) { err = self->system().render(e); });
  EXPECT_EQ(err, "");
  EXPECT_FALSE(rig.worker->engine().is_sleeping());
}

TEST(StepActors, FailedWakeLeavesTheEngineAsleepAndRecoverable) {
  Rig rig("wake");
  caf::scoped_actor self{*rig.sys};
  auto h = rig.worker->handles();
  auto ask_status = [&](auto... xs) {
    EngineStatus st;
    std::string err;
    self->request(h.engine, std::chrono::seconds(30), xs...)
        .receive([&](EngineStatus& s) { st = s; }, [&](caf::error& e) { err = self->system().render(e); });
    return std::make_pair(st, err);
  };
  auto [s1, e1] = ask_status(sleep_atom_v, int32_t(2));
  ASSERT_TRUE(e1.empty()) << e1;
  EXPECT_TRUE(s1.is_sleeping);
  auto [s2, e2] = ask_status(wake_atom_v, std::vector<std::string>{"bogus"});
  EXPECT_NE(e2.find("bogus"), std::string::npos) << e2;
  auto [s3, e3] = ask_status(status_atom_v);
  EXPECT_TRUE(s3.is_sleeping) << "a refused wake changes nothing";
  // Generation is refused until weights are loaded after a level-2 wake.
  auto [s4, e4] = ask_status(wake_atom_v, std::vector<std::string>{});
  ASSERT_TRUE(e4.empty()) << e4;
  EXPECT_FALSE(s4.weights_valid);
  RolloutBatch b;
  std::string gen_err;
  self->request(h.engine, std::chrono::seconds(30), generate_atom_v,
                RolloutRequest{0, {"ab="}, 1, 1.f, 1.f, 4, 0})
      .receive([&](RolloutBatch& x) { b = x; }, [&](caf::error& e) { gen_err = self->system().render(e); });
  EXPECT_NE(gen_err.find("weights"), std::string::npos) << gen_err;
  // A sync makes it usable again.
  SyncReport rep;
  std::string sync_err;
  self->request(h.syncer, std::chrono::seconds(30), sync_atom_v, int64_t(1))
      .receive([&](SyncReport& r) { rep = r; }, [&](caf::error& e) { sync_err = self->system().render(e); });
  ASSERT_TRUE(sync_err.empty()) << sync_err;
  EXPECT_GT(rep.bytes, 0u);
  gen_err.clear();
  self->request(h.engine, std::chrono::seconds(30), generate_atom_v,
                RolloutRequest{0, {"ab="}, 1, 1.f, 1.f, 4, 0})
      .receive([&](RolloutBatch& x) { b = x; }, [&](caf::error& e) { gen_err = self->system().render(e); });
  EXPECT_TRUE(gen_err.empty()) << gen_err;
  EXPECT_EQ(b.rollouts.size(), 1u);
}
