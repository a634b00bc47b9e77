// Sleep/wake costs of the allocator pool, each against a limit measured in the same run:
//   offload / restore GB/s  vs  one plain pinned cudaMemcpyAsync (host: one memcpy)
//   discard-sleep / wake-map ms  vs  the same unmap+release / create+map+set-access done
//                                   directly on the driver (host: madvise+mprotect / mprotect)
//   discard+wake of the largest size  vs  the 60 ms target
// Sweeps sizes 1, 4, 16, 32 GiB x chunk sizes 2 MiB, 32 MiB, 256 MiB, 1 GiB (offload/restore:
// every chunk at 1 and 4 GiB, the default 1 GiB chunk at every size; discard/wake: the whole
// grid), then discard-sleep + wake-map of 48 GiB against the target. ~1.5 min on an H100 with
// --warmup 1 --repeats 3.
// --quick (or no GPU) runs small sizes on the host backend; --cpu forces the host backend;
// --max-gib N caps the sizes.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"
#include "siesta/allocator.hpp"
#include "siesta/kernels/device.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda_driver.hpp"
#endif

using namespace siesta::allocator;
using siesta::bench::fmt_bytes;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30;

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double gbps(uint64_t bytes, double ms) { return double(bytes) / (ms * 1e6); }

// What differs between the CUDA and host runs: the limits and how content is written/read.
struct Rig {
  bool cuda = false;
  siesta::Device device = siesta::Device::cpu();
  double d2h_limit_gbps = 0, h2d_limit_gbps = 0;
  std::string limit_desc;
  std::function<void(void* dst, const void* src, uint64_t n, bool to_device)> copy;
  std::function<void(uint64_t size, uint64_t chunk, double& release_ms, double& map_ms)> floor;
  std::function<uint64_t()> free_bytes;
  // Host pages are only backed once touched: touch them so a discard has pages to drop, as
  // a device mapping always has.
  std::function<void(void*, uint64_t)> touch = [](void*, uint64_t) {};
};

// ---- host rig ----------------------------------------------------------------------------

Rig host_rig(const siesta::bench::Options& o) {
  Rig r;
  r.limit_desc = "one memcpy between resident buffers";
  const uint64_t n = 256 * MiB;
  std::vector<char> a(n, 1), b(n, 2);
  auto t = siesta::bench::time_ms(o, [&] { std::memcpy(b.data(), a.data(), n); });
  r.d2h_limit_gbps = r.h2d_limit_gbps = gbps(n, t.median_ms);
  r.copy = [](void* d, const void* s, uint64_t n, bool) { std::memcpy(d, s, n); };
  r.floor = [o](uint64_t size, uint64_t, double& release_ms, double& map_ms) {
    void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    std::vector<double> rel, map;
    for (int i = 0; i < o.warmup + o.repeats; ++i) {
      auto t0 = Clock::now();
      mprotect(p, size, PROT_READ | PROT_WRITE);
      double m = since_ms(t0);
      std::memset(p, 1, size);
      t0 = Clock::now();
      madvise(p, size, MADV_DONTNEED);
      mprotect(p, size, PROT_NONE);
      double r = since_ms(t0);
      if (i >= o.warmup) rel.push_back(r), map.push_back(m);
    }
    munmap(p, size);
    release_ms = median(rel);
    map_ms = median(map);
  };
  r.free_bytes = [] { return siesta::kernels::host_memory().available_bytes; };
  r.touch = [](void* p, uint64_t n) { std::memset(p, 1, n); };
  return r;
}

// ---- CUDA rig ----------------------------------------------------------------------------

#ifdef SIESTA_WITH_CUDA
#define CK(x) cuda::check_rt(int(x), #x)

double pinned_copy_gbps(const siesta::bench::Options& o, bool to_device) {
  const uint64_t n = 2 * GiB;
  void *host = nullptr, *dev = nullptr;
  CK(cudaHostAlloc(&host, n, cudaHostAllocPortable));
  CK(cudaMalloc(&dev, n));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  auto t = siesta::bench::time_ms(o, [&] {
    CK(cudaMemcpyAsync(to_device ? dev : host, to_device ? host : dev, n,
                       to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
  });
  cudaStreamDestroy(s);
  cudaFree(dev);
  cudaFreeHost(host);
  return gbps(n, t.median_ms);
}

// The driver's own cost for the same mapping work, with no pool around it.
void vmm_floor(const siesta::bench::Options& o, uint64_t size, uint64_t chunk, double& release_ms,
               double& map_ms) {
  auto& d = cuda::driver();
  auto prop = cuda::device_prop(0);
  auto access = cuda::device_access(0);
  CUdeviceptr base = 0;
  cuda::check(d.cuMemAddressReserve(&base, size, 0, 0, 0), "cuMemAddressReserve");
  std::vector<CUmemGenericAllocationHandle> h(size / chunk);
  std::vector<double> rel, map;
  for (int i = 0; i < o.warmup + o.repeats; ++i) {
    auto t0 = Clock::now();
    for (size_t c = 0; c < h.size(); ++c) {
      cuda::check(d.cuMemCreate(&h[c], chunk, &prop, 0), "cuMemCreate");
      cuda::check(d.cuMemMap(base + c * chunk, chunk, 0, h[c], 0), "cuMemMap");
    }
    cuda::check(d.cuMemSetAccess(base, size, &access, 1), "cuMemSetAccess");
    double m = since_ms(t0);
    t0 = Clock::now();
    for (size_t c = 0; c < h.size(); ++c) {
      cuda::check(d.cuMemUnmap(base + c * chunk, chunk), "cuMemUnmap");
      cuda::check(d.cuMemRelease(h[c]), "cuMemRelease");
    }
    double r = since_ms(t0);
    if (i >= o.warmup) rel.push_back(r), map.push_back(m);
  }
  d.cuMemAddressFree(base, size);
  release_ms = median(rel);
  map_ms = median(map);
}

Rig cuda_rig(const siesta::bench::Options& o) {
  Rig r;
  r.cuda = true;
  r.device = siesta::Device::cuda(0);
  CK(cudaSetDevice(0));
  r.d2h_limit_gbps = pinned_copy_gbps(o, false);
  r.h2d_limit_gbps = pinned_copy_gbps(o, true);
  r.limit_desc = "one 2 GiB pinned cudaMemcpyAsync";
  r.copy = [](void* d, const void* s, uint64_t n, bool to_device) {
    CK(cudaMemcpy(d, s, n, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
  };
  r.floor = [o](uint64_t size, uint64_t chunk, double& rel, double& map) {
    vmm_floor(o, size, chunk, rel, map);
  };
  r.free_bytes = [] {
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    return uint64_t(f);
  };
  return r;
}
#endif

// ---- rows --------------------------------------------------------------------------------

// Writes random bytes at both ends of an allocation; check() says whether they survived.
struct Probe {
  std::vector<uint8_t> head, tail;
  Probe(const Rig& rig, const Allocation& a, uint32_t seed) : head(MiB), tail(MiB) {
    std::mt19937 g(seed);
    for (auto& b : head) b = uint8_t(g());
    for (auto& b : tail) b = uint8_t(g());
    rig.copy(a.ptr, head.data(), MiB, true);
    rig.copy(static_cast<char*>(a.ptr) + a.bytes - MiB, tail.data(), MiB, true);
  }
  bool check(const Rig& rig, const Allocation& a) const {
    std::vector<uint8_t> h(MiB), t(MiB);
    rig.copy(h.data(), a.ptr, MiB, false);
    rig.copy(t.data(), static_cast<char*>(a.ptr) + a.bytes - MiB, MiB, false);
    return h == head && t == tail;
  }
};

using Cols = std::vector<std::pair<std::string, siesta::bench::Value>>;
Cols cols(const char* op, uint64_t size, uint64_t chunk, const char* target) {
  return {{"op", std::string(op)}, {"size", fmt_bytes(double(size))},
          {"chunk", fmt_bytes(double(chunk))}, {"target", std::string(target)}};
}

// The 90% target is stated for the default 1 GiB chunk; smaller chunks show the trade-off.
void copy_rows(siesta::bench::Table& table, const siesta::bench::Options& o, const Rig& rig,
               Pool& pool, uint64_t size, bool has_target) {
  auto a = pool.allocate(size, "weights", "bench");
  Probe probe(rig, a, uint32_t(size >> 20));
  std::vector<double> off, res;
  for (int i = 0; i < o.warmup + o.repeats; ++i) {
    auto t0 = Clock::now();
    pool.sleep({"weights"}, SleepMode::Offload);
    double s = since_ms(t0);
    t0 = Clock::now();
    pool.wake({"weights"});
    double w = since_ms(t0);
    if (i >= o.warmup) off.push_back(s), res.push_back(w);
  }
  std::string check = probe.check(rig, a) ? "ok" : "content lost";
  pool.free(a);
  uint64_t chunk = pool.options().chunk_bytes;
  double off_gbps = gbps(size, median(off)), res_gbps = gbps(size, median(res));
  bool judged = rig.cuda && has_target;
  auto target = [&](double g, double lim) { return !judged ? "-" : g >= 0.9 * lim ? "met" : "MISSED"; };
  table.row(cols("offload", size, chunk, target(off_gbps, rig.d2h_limit_gbps)), off_gbps,
            rig.d2h_limit_gbps, "GB/s", check);
  table.row(cols("restore", size, chunk, target(res_gbps, rig.h2d_limit_gbps)), res_gbps,
            rig.h2d_limit_gbps, "GB/s", check);
}

void discard_rows(siesta::bench::Table& table, const siesta::bench::Options& o, const Rig& rig,
                  uint64_t size, uint64_t chunk, bool target_row) {
  double floor_release = 0, floor_map = 0;
  rig.floor(size, chunk, floor_release, floor_map);
  auto pool = Pool::create({rig.device, chunk, 0, 0});
  auto a = pool->allocate(size, "kv_cache", "bench");
  std::vector<double> sl, wk;
  for (int i = 0; i < o.warmup + o.repeats; ++i) {
    rig.touch(a.ptr, a.bytes);
    auto t0 = Clock::now();
    pool->sleep({"kv_cache"}, SleepMode::Discard);
    double s = since_ms(t0);
    t0 = Clock::now();
    pool->wake({"kv_cache"});
    double w = since_ms(t0);
    if (i >= o.warmup) sl.push_back(s), wk.push_back(w);
  }
  Probe probe(rig, a, 5);  // the woken memory must be usable
  std::string check = probe.check(rig, a) ? "ok" : "woken memory unusable";
  pool->free(a);
  double s = median(sl), w = median(wk);
  table.row(cols("discard-sleep", size, chunk, "-"), s, floor_release, "ms", check);
  table.row(cols("wake-map", size, chunk, "-"), w, floor_map, "ms", check);
  if (target_row)
    table.row(cols("discard+wake", size, chunk, s + w <= 60 ? "met" : "MISSED"), s + w, 60.0, "ms",
              check);
}

}  // namespace

int main(int argc, char** argv) {
  auto o = siesta::bench::parse_options(
      argc, argv, "bench_allocator",
      "sleep/wake of the allocator pool vs pinned copy bandwidth and the driver's map floor");
  bool force_cpu = false;
  uint64_t max_gib = 48;
  for (size_t i = 0; i < o.rest.size(); ++i) {
    if (o.rest[i] == "--cpu") force_cpu = true;
    else if (o.rest[i] == "--max-gib" && i + 1 < o.rest.size()) max_gib = std::stoull(o.rest[++i]);
    else {
      std::fprintf(stderr, "bench_allocator: unknown option '%s' (--cpu, --max-gib N)\n",
                   o.rest[i].c_str());
      return 2;
    }
  }
  bool use_cuda = !o.quick && !force_cpu && siesta::kernels::cuda_available();
#ifndef SIESTA_WITH_CUDA
  use_cuda = false;
#endif
  Rig rig;
#ifdef SIESTA_WITH_CUDA
  if (use_cuda) rig = cuda_rig(o);
#endif
  if (!use_cuda) rig = host_rig(o);

  // The sweep: sizes x chunk sizes. Offload/restore runs every chunk size at the sizes up to
  // copy_sweep_max and the default (largest) chunk at every size: one pool, so one pinned
  // backup allocated once, per chunk size (pinning 32 GiB alone takes ~25 s). Discard/wake
  // runs the whole grid, then the largest size (48 GiB) at the default chunk for the target.
  std::vector<uint64_t> sizes, chunks;
  uint64_t copy_sweep_max, target_size;
  if (use_cuda) {
    sizes = {1 * GiB, 4 * GiB, 16 * GiB, 32 * GiB};
    chunks = {2 * MiB, 32 * MiB, 256 * MiB, 1 * GiB};
    copy_sweep_max = 4 * GiB;
    target_size = 48 * GiB;
  } else {
    uint64_t s = o.quick ? 16 * MiB : 256 * MiB;
    sizes = {s, 4 * s};
    chunks = {2 * MiB, 8 * MiB};
    copy_sweep_max = s;
    target_size = 0;
  }
  const uint64_t default_chunk = chunks.back();
  // Keep 2 GiB of the device (or the host) for everything else.
  uint64_t room = rig.free_bytes() > 2 * GiB ? rig.free_bytes() - 2 * GiB : 0;
  auto fits = [&](uint64_t s) { return s <= max_gib * GiB && s <= room; };
  std::vector<std::string> skipped;

  siesta::bench::Table table("allocator", o);
  auto info = siesta::kernels::cuda_status();
  table.note(std::string("device: ") +
             (use_cuda ? info.gpus[0].name : "cpu (host backend)") + "; limits: " +
             rig.limit_desc + " d2h " + std::to_string(rig.d2h_limit_gbps).substr(0, 5) +
             " GB/s, h2d " + std::to_string(rig.h2d_limit_gbps).substr(0, 5) + " GB/s");
  table.note("offload/restore ratio = pool GB/s / plain pinned copy GB/s (target >= 90% at the "
             "default " + fmt_bytes(double(default_chunk)) + " chunk)");
  table.note("discard-sleep / wake-map limit = the same unmap+release / create+map+set-access "
             "straight on the driver (ratio > 100% = pool overhead)");
  if (target_size)
    table.note("discard+wake limit = the 60 ms target for " + fmt_bytes(double(target_size)));

  for (auto c : chunks) {
    const bool is_default = c == default_chunk;
    std::vector<uint64_t> ss;
    for (auto s : sizes) {
      if (!is_default && s > copy_sweep_max) continue;
      if (fits(s)) ss.push_back(s);
      else skipped.push_back("offload " + fmt_bytes(double(s)) + "/" + fmt_bytes(double(c)));
    }
    if (ss.empty()) continue;
    auto pool = Pool::create({rig.device, c, 0, *std::max_element(ss.begin(), ss.end())});
    for (auto s : ss) copy_rows(table, o, rig, *pool, s, is_default);
  }
  for (auto c : chunks)
    for (auto s : sizes) {
      if (fits(s)) discard_rows(table, o, rig, s, c, false);
      else skipped.push_back("discard " + fmt_bytes(double(s)) + "/" + fmt_bytes(double(c)));
    }
  if (target_size) {
    if (fits(target_size)) discard_rows(table, o, rig, target_size, default_chunk, true);
    else skipped.push_back("discard+wake target " + fmt_bytes(double(target_size)));
  }
  if (!skipped.empty()) {
    std::string s;
    for (auto& k : skipped) s += (s.empty() ? "" : ", ") + k;
    table.note("skipped (beyond --max-gib or free memory): " + s);
  }
  return table.failures() ? 1 : 0;
}
