#include "limits.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "siesta/kernels/device.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda_driver.hpp"
#endif

namespace siesta::bench::limits {
namespace {

constexpr uint64_t kCopyBytes = 2ull << 30, kHostCopyBytes = 256ull << 20;

#ifdef SIESTA_WITH_CUDA
void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#endif

double memcpy_gbps(const Options& o, double bytes_factor) {
  std::vector<char> a(kHostCopyBytes, 1), b(kHostCopyBytes, 2);
  auto t = time_ms(o, [&] { std::memcpy(b.data(), a.data(), a.size()); });
  return bytes_factor * double(kHostCopyBytes) / (t.median_ms * 1e6);
}

}  // namespace

double pinned_copy_gbps(const Options& o, bool cuda, bool to_device) {
#ifdef SIESTA_WITH_CUDA
  if (cuda) {
    void *host = nullptr, *dev = nullptr;
    ck(cudaHostAlloc(&host, kCopyBytes, cudaHostAllocPortable), "cudaHostAlloc");
    ck(cudaMalloc(&dev, kCopyBytes), "cudaMalloc");
    std::memset(host, 1, kCopyBytes);
    cudaStream_t s;
    ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    auto t = time_ms(o, [&] {
      ck(cudaMemcpyAsync(to_device ? dev : host, to_device ? host : dev, kCopyBytes,
                         to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s),
         "pinned cudaMemcpyAsync");
      ck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    });
    cudaStreamDestroy(s);
    cudaFree(dev);
    cudaFreeHost(host);
    return double(kCopyBytes) / (t.median_ms * 1e6);
  }
#endif
  (void)to_device;
  (void)cuda;
  return memcpy_gbps(o, 1.0);
}

double hbm_gbps(const Options& o, bool cuda) {
#ifdef SIESTA_WITH_CUDA
  if (cuda) {
    void *a = nullptr, *b = nullptr;
    ck(cudaMalloc(&a, kCopyBytes), "cudaMalloc");
    ck(cudaMalloc(&b, kCopyBytes), "cudaMalloc");
    ck(cudaMemset(a, 1, kCopyBytes), "cudaMemset");
    cudaStream_t s;
    ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    ck(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    auto t = time_ms(o, [&] {
      for (int i = 0; i < 5; ++i)
        ck(cudaMemcpyAsync(b, a, kCopyBytes, cudaMemcpyDeviceToDevice, s), "d2d cudaMemcpyAsync");
      ck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    });
    cudaStreamDestroy(s);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * 5.0 * double(kCopyBytes) / (t.median_ms * 1e6);
  }
#endif
  (void)cuda;
  return memcpy_gbps(o, 2.0);
}

MapFloor vmm_floor(const Options& o, uint64_t bytes, uint64_t chunk) {
  MapFloor f;
#ifdef SIESTA_WITH_CUDA
  namespace cu = siesta::allocator::cuda;
  auto& d = cu::driver();
  const auto prop = cu::device_prop(0);
  const auto access = cu::device_access(0);
  bytes = (bytes + chunk - 1) / chunk * chunk;
  CUdeviceptr base = 0;
  cu::check(d.cuMemAddressReserve(&base, bytes, 0, 0, 0), "cuMemAddressReserve");
  std::vector<CUmemGenericAllocationHandle> h(bytes / chunk);
  std::vector<double> map, rel;
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  for (int i = 0; i < o.warmup + o.repeats; ++i) {
    auto t0 = Clock::now();
    for (size_t c = 0; c < h.size(); ++c) {
      cu::check(d.cuMemCreate(&h[c], chunk, &prop, 0), "cuMemCreate");
      cu::check(d.cuMemMap(base + c * chunk, chunk, 0, h[c], 0), "cuMemMap");
    }
    cu::check(d.cuMemSetAccess(base, bytes, &access, 1), "cuMemSetAccess");
    const double m = ms(t0);
    t0 = Clock::now();
    for (size_t c = 0; c < h.size(); ++c) {
      cu::check(d.cuMemUnmap(base + c * chunk, chunk), "cuMemUnmap");
      cu::check(d.cuMemRelease(h[c]), "cuMemRelease");
    }
    const double r = ms(t0);
    if (i >= o.warmup) map.push_back(m), rel.push_back(r);
  }
  d.cuMemAddressFree(base, bytes);
  std::sort(map.begin(), map.end());
  std::sort(rel.begin(), rel.end());
  f.map_ms = map[map.size() / 2];
  f.release_ms = rel[rel.size() / 2];
#else
  (void)o;
  (void)bytes;
  (void)chunk;
#endif
  return f;
}

std::string device_name(bool cuda) {
  if (!cuda) return "cpu";
  auto s = kernels::cuda_status();
  return s.gpus.empty() ? "cuda:0" : s.gpus[0].name;
}

}  // namespace siesta::bench::limits
