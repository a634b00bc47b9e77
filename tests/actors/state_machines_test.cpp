// The CAF-free state machines the actors and `siesta replay` share.
#include <gtest/gtest.h>

#include "siesta/actors/engine_lifecycle.hpp"
#include "siesta/actors/memory_budget.hpp"
#include "siesta/actors/step_protocol.hpp"

using namespace siesta::actors;

TEST(EngineLifecycle, IsSleepingUntilEveryTagIsAwake) {
  EngineLifecycle lc;
  EXPECT_FALSE(lc.state().is_sleeping());
  lc.sleep(2);
  EXPECT_TRUE(lc.state().is_sleeping());
  lc.wake({"weights"});
  EXPECT_TRUE(lc.state().is_sleeping()) << "kv_cache still asleep";
  lc.wake({"kv_cache"});
  EXPECT_FALSE(lc.state().is_sleeping());
  lc.sleep(1);
  lc.wake({});
  EXPECT_FALSE(lc.state().is_sleeping()) << "no tags wakes everything";
}

TEST(EngineLifecycle, Level2RefusesGenerationUntilWeightsLoaded) {
  EngineLifecycle lc;
  lc.sleep(2);
  lc.wake({});
  EXPECT_THROW(lc.check_can_generate(), LifecycleError);
  lc.weights_loaded();
  EXPECT_NO_THROW(lc.check_can_generate());
}

TEST(EngineLifecycle, Level1KeepsWeightsValid) {
  EngineLifecycle lc;
  lc.sleep(1);
  EXPECT_THROW(lc.check_can_generate(), LifecycleError);
  lc.wake({});
  EXPECT_NO_THROW(lc.check_can_generate());
}

TEST(EngineLifecycle, BadTransitionsThrowAndChangeNothing) {
  EngineLifecycle lc;
  EXPECT_THROW(lc.sleep(3), LifecycleError);
  EXPECT_THROW(lc.wake({"weights"}), LifecycleError) << "awake tag";
  lc.sleep(2);
  auto before = lc.state();
  EXPECT_THROW(lc.sleep(1), LifecycleError);
  EXPECT_THROW(lc.wake({"bogus"}), LifecycleError);
  EXPECT_THROW(lc.weights_loaded(), LifecycleError) << "weights asleep";
  EXPECT_EQ(lc.state(), before);
  try {
    lc.wake({"kv"});
  } catch (const LifecycleError& e) {
    EXPECT_NE(std::string(e.what()).find("allowed: weights, kv_cache"), std::string::npos);
  }
}

TEST(MemoryBudget, RefusalNamesRequestedFreeAndHolders) {
  MemoryBudget b(10ull << 30);
  b.reserve("trainer", "optimizer", 6ull << 30);
  b.reserve("engine", "weights", 3ull << 30);
  try {
    b.reserve("engine", "kv_cache", 2ull << 30);
    FAIL() << "over-budget reserve granted";
  } catch (const BudgetError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("2.00 GiB"), std::string::npos) << m;
    EXPECT_NE(m.find("1.00 GiB of 10.00 GiB is free"), std::string::npos) << m;
    EXPECT_NE(m.find("trainer/optimizer 6.00 GiB"), std::string::npos) << m;
  }
  EXPECT_EQ(b.held(), 9ull << 30) << "a refused reserve holds nothing";
  b.release("trainer", "optimizer");
  b.reserve("engine", "kv_cache", 2ull << 30);
  EXPECT_EQ(b.peak_held(), 9ull << 30);
  EXPECT_EQ(b.timeline().size(), 4u);
  EXPECT_THROW(b.release("engine", "weights", 4ull << 30), BudgetError);
}

TEST(StepProtocol, Level2WeightsFirstOrder) {
  StepPlan p;
  EXPECT_EQ(p.phases(), (std::vector<std::string>{"rollout", "sleep", "restore", "train", "offload",
                                                   "wake_weights", "sync", "wake_kv"}));
  p.sleep_level = 1;
  EXPECT_EQ(p.phases(), (std::vector<std::string>{"rollout", "sleep", "restore", "train", "offload",
                                                   "wake_all", "sync"}))
      << "level 1 wakes everything from the CPU backup; the trained weights still need a sync";
  p = StepPlan{};
  p.wake_order = WakeOrder::All;
  p.offload_trainer = false;
  EXPECT_EQ(p.phases(), (std::vector<std::string>{"rollout", "sleep", "train", "wake_all", "sync"}));
}

TEST(StepProtocol, OutOfOrderPhaseNamesExpected) {
  StepProtocol sp(StepPlan{});
  for (auto& ph : StepPlan{}.phases()) sp.advance(ph);
  EXPECT_EQ(sp.completed_steps(), 1);
  sp.advance("rollout");
  try {
    sp.advance("train");
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("expected 'sleep'"), std::string::npos) << e.what();
  }
}
