// Shared set-up for the model tests: the tiny preset on the CPU backend, weights initialised
// with larger values than a real init so that every path (attention patterns, norms, biases)
// carries signal a finite difference can see.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "siesta/model.hpp"

namespace siesta::model::test {

inline ModelConfig tiny_config() { return load_preset("tiny"); }

inline void randomize(const ModelWeights& w, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  for (const auto& t : w.tensors) {
    float* p = t.view.as<float>();
    const bool norm = t.name.find("norm") != std::string::npos;
    const bool bias = t.name.find(".bias") != std::string::npos;
    const float s = norm ? 0.1f : bias ? 0.1f : 0.2f;
    for (int64_t i = 0; i < t.view.numel(); ++i) p[i] = (norm ? 1.f : 0.f) + s * n(g);
  }
}

inline std::vector<int32_t> random_tokens(size_t n, int vocab, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(g);
  return t;
}

// A scratch directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() /
           (name + "-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace siesta::model::test
