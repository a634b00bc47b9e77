// Test helpers for the CUDA op table: device buffers, bf16-exact random inputs, poisoned
// outputs and the relative error ||got - ref|| / ||ref||.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gpu_test.hpp"
#include "siesta/kernels/ops.hpp"

namespace siesta::kernels::test {

// Device memory for one test; freed on scope exit.
class DevBuf {
 public:
  explicit DevBuf(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&p_, bytes ? bytes : 1) != cudaSuccess) throw std::runtime_error("cudaMalloc");
  }
  ~DevBuf() { cudaFree(p_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T = void> T* as() const { return static_cast<T*>(p_); }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }
  // All bits set: NaN as bf16 and fp32, -1 as int32. An element a kernel fails to write
  // stays NaN and fails every comparison.
  void poison() const {
    ASSERT_EQ(cudaMemset(p_, 0xff, bytes_), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

inline uint64_t fresh_seed() { return (uint64_t(std::random_device{}()) << 32) | std::random_device{}(); }

// Normal values rounded to bf16, so host references see exactly what the GPU reads. Never
// zero-filled: a zero input hides unwritten outputs and wrong indexing.
inline std::vector<float> randn_bf16(size_t n, std::mt19937_64& g, float scale = 1.f,
                                     float shift = 0.f) {
  std::normal_distribution<float> d(shift, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(d(g)));
  return v;
}
inline std::vector<float> randn_f32(size_t n, std::mt19937_64& g, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline std::unique_ptr<DevBuf> upload_bf16(Ops& ops, const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  auto b = std::make_unique<DevBuf>(h.size() * 2);
  ops.copy_to_device(b->get(), h.data(), h.size() * 2);
  return b;
}
template <class T>
std::unique_ptr<DevBuf> upload(Ops& ops, const std::vector<T>& v) {
  auto b = std::make_unique<DevBuf>(v.size() * sizeof(T));
  ops.copy_to_device(b->get(), v.data(), v.size() * sizeof(T));
  return b;
}
inline std::vector<float> download_bf16(Ops& ops, const DevBuf& b, size_t n) {
  std::vector<uint16_t> h(n);
  ops.copy_to_host(h.data(), b.get(), n * 2);  // synchronises the ops stream
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(h[i]);
  return v;
}
template <class T>
std::vector<T> download(Ops& ops, const DevBuf& b, size_t n) {
  std::vector<T> v(n);
  ops.copy_to_host(v.data(), b.get(), n * sizeof(T));
  return v;
}

// ||got - ref|| / ||ref||; NaN anywhere gives NaN, which fails every `<` check.
template <class G, class R>
double rel_err(const std::vector<G>& got, const std::vector<R>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / (den > 0 ? den : 1e-300));
}

class OpsGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    SIESTA_REQUIRE_GPU();
    ops = make_cuda_ops(0);
    seed = fresh_seed();
    rng.seed(seed);
  }
  std::unique_ptr<Ops> ops;
  uint64_t seed = 0;
  std::mt19937_64 rng;
};

// Prints the seed of a failing test, so its inputs can be drawn again.
#define SIESTA_TRACE_SEED() SCOPED_TRACE("random seed " + std::to_string(seed))

}  // namespace siesta::kernels::test
