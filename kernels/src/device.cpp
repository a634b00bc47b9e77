// Device and host-memory queries; never throws, so `siesta doctor` works on any machine.
#include "siesta/kernels/device.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace siesta::kernels {

CudaStatus cuda_status() {
  CudaStatus s;
#ifdef SIESTA_WITH_CUDA
  s.compiled_in = true;
  cudaRuntimeGetVersion(&s.runtime_version);
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    s.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();
    return s;
  }
  if (n == 0) s.error = "no CUDA device is visible";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = p.name;
    g.cc_major = p.major;
    g.cc_minor = p.minor;
    g.total_bytes = p.totalGlobalMem;
    g.multiprocessors = p.multiProcessorCount;
    size_t free_b = 0, total_b = 0;
    int prev = 0;
    cudaGetDevice(&prev);
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      g.free_bytes = free_b;
      g.total_bytes = total_b;
    }
    cudaSetDevice(prev);
    s.gpus.push_back(g);
  }
#else
  s.error = "this build has no CUDA support (configured with SIESTA_CUDA=OFF or without nvcc)";
#endif
  return s;
}

bool cuda_available() {
  static const bool available = [] { return !cuda_status().gpus.empty(); }();
  return available;
}

HostMemory host_memory() {
  HostMemory m;
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemTotal:") m.total_bytes = kb * 1024;
    if (key == "MemAvailable:") m.available_bytes = kb * 1024;
  }
  return m;
}

uint64_t process_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * uint64_t(sysconf(_SC_PAGESIZE));
}

}  // namespace siesta::kernels
