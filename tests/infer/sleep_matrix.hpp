// The sleep/wake matrix, written once and run on the CPU (tiny preset, test_infer_unit) and on
// a GPU (small preset, test_infer_gpu). Each check builds its own engine from `opts`.
#pragma once

#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace siesta::infer::testing {

inline SamplingParams matrix_params() {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.seed = 7;
  p.max_tokens = 12;
  p.ignore_eos = true;
  return p;
}

// The folder's own tensors, as update_weights() takes them (host memory, file dtype).
inline std::vector<WeightUpdate> folder_weights(const model::ModelFolder& f,
                                                const InferenceEngine& e) {
  std::vector<WeightUpdate> out;
  for (const auto& w : e.weight_infos()) {
    const auto& t = f.tensor(w.name);
    out.push_back({w.name, TensorView{const_cast<void*>(t.data), t.dtype, t.shape, Device::cpu()}});
  }
  return out;
}

inline void check_level1_wake_all_is_identical(const EngineOptions& opts) {
  InferenceEngine e(opts);
  auto ps = prompts(4, e.model_config().vocab_size, 11);
  auto before = tokens_of(e.generate(ps, matrix_params()));
  e.sleep(1);
  EXPECT_TRUE(e.is_sleeping());
  e.wake_up();
  EXPECT_FALSE(e.is_sleeping());
  EXPECT_EQ(tokens_of(e.generate(ps, matrix_params())), before);
}

inline void check_level2_update_then_wake_kv_is_identical(const EngineOptions& opts) {
  InferenceEngine e(opts);
  auto ps = prompts(4, e.model_config().vocab_size, 12);
  auto before = tokens_of(e.generate(ps, matrix_params()));
  e.sleep(2);
  e.wake_up({"weights"});
  EXPECT_TRUE(e.is_sleeping()) << "kv_cache still asleep";
  auto folder = model::load_model_folder(opts.model);
  e.update_weights(folder_weights(folder, e));
  EXPECT_TRUE(e.sleep_state().weights_valid);
  e.wake_up({"kv_cache"});
  EXPECT_FALSE(e.is_sleeping());
  EXPECT_EQ(tokens_of(e.generate(ps, matrix_params())), before);
}

inline void check_level2_without_update_refuses(const EngineOptions& opts) {
  InferenceEngine e(opts);
  auto ps = prompts(2, e.model_config().vocab_size, 13);
  e.sleep(2);
  e.wake_up();
  EXPECT_FALSE(e.is_sleeping());
  try {
    e.generate(ps, matrix_params());
    FAIL() << "generation after sleep(2) without new weights must be refused";
  } catch (const InferError& err) {
    EXPECT_EQ(err.kind(), ErrorKind::WeightsNotLoaded);
    EXPECT_NE(std::string(err.what()).find("update_weights"), std::string::npos) << err.what();
  }
  // Loading the weights makes it serve again.
  e.load_weights(opts.model);
  EXPECT_EQ(e.generate(ps, matrix_params()).size(), 2u);
}

inline void check_is_sleeping_truth_table(const EngineOptions& opts) {
  InferenceEngine e(opts);
  EXPECT_FALSE(e.is_sleeping());
  for (int level : {1, 2}) {
    // Wake weights first, then kv.
    e.sleep(level);
    EXPECT_TRUE(e.is_sleeping());
    EXPECT_EQ(e.sleep_state().level, level);
    e.wake_up({"weights"});
    EXPECT_TRUE(e.is_sleeping());
    EXPECT_TRUE(e.sleep_state().weights_awake);
    EXPECT_FALSE(e.sleep_state().kv_cache_awake);
    e.wake_up({"kv_cache"});
    EXPECT_FALSE(e.is_sleeping());
    EXPECT_EQ(e.sleep_state().level, 0);
    // kv first, then weights.
    e.sleep(level);
    e.wake_up({"kv_cache"});
    EXPECT_TRUE(e.is_sleeping());
    e.wake_up({"weights"});
    EXPECT_FALSE(e.is_sleeping());
    // Both at once, and the empty list meaning both.
    e.sleep(level);
    e.wake_up({"weights", "kv_cache"});
    EXPECT_FALSE(e.is_sleeping());
    e.sleep(level);
    e.wake_up();
    EXPECT_FALSE(e.is_sleeping());
  }
}

}  // namespace siesta::infer::testing
