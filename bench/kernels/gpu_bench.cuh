// Shared pieces of the CUDA kernel benchmarks: device buffers, random bf16 fill (never zeros:
// they hide unwritten outputs and can run faster than real data), non-finite counting for the
// check column, event timing with a median, and the device-to-device copy bandwidth that
// serves as the HBM limit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "harness.hpp"
#include "siesta/kernels/error.hpp"

namespace siesta::bench::gpu {

class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes) { SIESTA_CUDA_CHECK(cudaMalloc(&p_, bytes)); }
  ~Buffer() { cudaFree(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T = void> T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

__device__ inline uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return uint32_t(x);
}

// Uniform in [lo, hi), shifted away from 0 so no element is exactly zero.
__global__ void fill_bf16_kernel(__nv_bfloat16* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float u = (hash32(seed * 0x9e3779b97f4a7c15ull + i) + 0.5f) * (1.f / 4294967296.f);
    float v = lo + (hi - lo) * u;
    if (v == 0.f) v = 1e-3f;
    p[i] = __float2bfloat16(v);
  }
}
__global__ void fill_f32_kernel(float* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = lo + (hi - lo) * ((hash32(seed * 0x9e3779b97f4a7c15ull + i) + 0.5f) * (1.f / 4294967296.f));
}
__global__ void fill_i32_kernel(int32_t* p, size_t n, uint64_t seed, int32_t mod) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = int32_t(hash32(seed * 0x9e3779b97f4a7c15ull + i) % uint32_t(mod));
}

inline void fill_bf16(void* p, size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  fill_bf16_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed, lo, hi);
  SIESTA_CUDA_CHECK(cudaGetLastError());
}
inline void fill_f32(float* p, size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  fill_f32_kernel<<<1024, 256>>>(p, n, seed, lo, hi);
  SIESTA_CUDA_CHECK(cudaGetLastError());
}
inline void fill_i32(int32_t* p, size_t n, uint64_t seed, int32_t mod) {
  fill_i32_kernel<<<1024, 256>>>(p, n, seed, mod);
  SIESTA_CUDA_CHECK(cudaGetLastError());
}
// All bits set: NaN in bf16 and fp32, so unwritten outputs show up in count_nonfinite.
inline void poison(void* p, size_t bytes) { SIESTA_CUDA_CHECK(cudaMemset(p, 0xff, bytes)); }

__global__ void count_nonfinite_bf16(const __nv_bfloat16* p, size_t n, unsigned long long* out) {
  unsigned long long c = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    c += !isfinite(__bfloat162float(p[i]));
  if (c) atomicAdd(out, c);
}
__global__ void count_nonfinite_f32(const float* p, size_t n, unsigned long long* out) {
  unsigned long long c = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    c += !isfinite(p[i]);
  if (c) atomicAdd(out, c);
}
// "ok", or how many elements are NaN/Inf (unwritten after poisoning, or overflowed).
inline std::string finite_check(const void* p, size_t n, bool bf16) {
  unsigned long long* d = nullptr;
  SIESTA_CUDA_CHECK(cudaMalloc(&d, sizeof(*d)));
  SIESTA_CUDA_CHECK(cudaMemset(d, 0, sizeof(*d)));
  SIESTA_CUDA_CHECK(cudaDeviceSynchronize());
  if (bf16) count_nonfinite_bf16<<<1024, 256>>>(static_cast<const __nv_bfloat16*>(p), n, d);
  else count_nonfinite_f32<<<1024, 256>>>(static_cast<const float*>(p), n, d);
  SIESTA_CUDA_CHECK(cudaGetLastError());
  unsigned long long h = 0;
  SIESTA_CUDA_CHECK(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
  SIESTA_CUDA_CHECK(cudaFree(d));
  return h == 0 ? "ok" : std::to_string(h) + " non-finite of " + std::to_string(n);
}

// Median milliseconds per call of fn, over samples of `iters` back-to-back calls after
// `warmup` calls. `sync` waits for the work fn enqueued (the Ops table exposes no stream, so
// samples are timed with a host clock around iters calls plus one synchronisation; iters is
// chosen so a sample lasts milliseconds and the one sync is noise).
inline double time_ms(const Options& o, int iters, const std::function<void()>& fn,
                      const std::function<void()>& sync) {
  for (int i = 0; i < std::max(1, o.warmup); ++i) fn();
  sync();
  std::vector<double> t;
  for (int s = 0; s < std::max(3, o.repeats); ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    sync();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count() /
                iters);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Device-to-device copy of `bytes`, counted as bytes read + bytes written, in GB/s.
inline double copy_bandwidth_gbps(cudaStream_t stream, const Options& o, size_t bytes) {
  Buffer src(bytes), dst(bytes);
  fill_bf16(src.as(), bytes / 2, 1);
  SIESTA_CUDA_CHECK(cudaDeviceSynchronize());
  const double ms = time_ms(
      o, 10,
      [&] {
        SIESTA_CUDA_CHECK(
            cudaMemcpyAsync(dst.as(), src.as(), bytes, cudaMemcpyDeviceToDevice, stream));
      },
      [&] { SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream)); });
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

inline std::string device_name() {
  int dev = 0;
  SIESTA_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  SIESTA_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%s (%d SMs, %.1f GiB, L2 %d MiB)", p.name, p.multiProcessorCount,
                double(p.totalGlobalMem) / (1 << 30), p.l2CacheSize >> 20);
  return buf;
}

}  // namespace siesta::bench::gpu
