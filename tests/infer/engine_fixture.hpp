// Shared by the engine tests: a random model of a preset written once into a temp folder (the
// real loader reads it back), engine options sized for a test, and output comparison.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "siesta/infer/engine.hpp"
#include "siesta/model/folder.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"

namespace siesta::infer::testing {

// The folder of a random model of `preset` in `dtype`, created on first use with the real
// writer (the engine reads it back with the real loader) and removed at exit.
inline std::filesystem::path model_dir(const std::string& preset, DType dtype = DType::F32) {
  struct Dirs {
    std::map<std::string, std::filesystem::path> by_key;
    ~Dirs() {
      for (auto& [k, d] : by_key) std::filesystem::remove_all(d);
    }
  };
  static Dirs dirs;
  std::string key = preset + "_" + std::string(dtype_name(dtype));
  auto it = dirs.by_key.find(key);
  if (it != dirs.by_key.end()) return it->second;
  auto dir = std::filesystem::temp_directory_path() /
             ("siesta_infer_test_" + std::to_string(::getpid()) + "_" + key);
  model::create_random_model(model::load_preset(preset), 1234, dir, dtype);
  dirs.by_key[key] = dir;
  return dir;
}

// The CPU engine of the tests: the tiny preset, a small KV cache of 8-token blocks.
inline EngineOptions tiny_cpu_options() {
  EngineOptions o;
  o.model = model_dir("tiny").string();
  o.device = Device::cpu();
  o.kv_cache_bytes = 4 << 20;
  o.block_size = 8;
  o.max_num_seqs = 16;
  o.max_model_len = 128;
  o.max_num_batched_tokens = 256;
  return o;
}

inline std::vector<std::vector<int32_t>> prompts(int count, int vocab, uint64_t seed,
                                                 int min_len = 3, int max_len = 20) {
  std::vector<std::vector<int32_t>> out;
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < count; ++i) {
    int len = min_len + int(next() % uint64_t(max_len - min_len + 1));
    std::vector<int32_t> p;
    for (int j = 0; j < len; ++j) p.push_back(int32_t(next() % uint64_t(std::min(vocab, 256))));
    out.push_back(p);
  }
  return out;
}

inline std::vector<std::vector<int32_t>> tokens_of(const std::vector<RequestOutput>& outs) {
  std::vector<std::vector<int32_t>> t;
  for (const auto& o : outs)
    for (const auto& c : o.outputs) t.push_back(c.token_ids);
  return t;
}

}  // namespace siesta::infer::testing
