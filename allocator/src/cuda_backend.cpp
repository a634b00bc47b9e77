// CUDA backend on the driver's virtual-memory API. An allocation reserves its address range
// once (cuMemAddressReserve); physical memory comes and goes in chunks (cuMemCreate + cuMemMap
// + cuMemSetAccess / cuMemUnmap + cuMemRelease), so released memory really goes back to the
// driver while every pointer into the range stays valid for the next wake.
//
// Offload and restore copy through the persistent pinned backup on the pool's own stream,
// in spans of >= 64 MiB: all device-to-host copies are queued first, then each span's chunks
// are released as soon as its event fires, so the DMA engine stays busy while the driver
// releases the previous span. Restore maps span i+1 while span i is copying.
#include <cuda_runtime.h>

#include <algorithm>

#include "backend.hpp"
#include "cuda_driver.hpp"

namespace siesta::allocator {

namespace {

constexpr uint64_t kCopySpanBytes = 64ull << 20;

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&previous_);
    if (previous_ != device) cuda::check_rt(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

bool is_oom(CUresult r) { return r == CUDA_ERROR_OUT_OF_MEMORY; }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    int n = 0;
    std::string why;
    if (cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess) {
      cudaGetLastError();
      n = 0;
      why = std::string(" (") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")";
    }
    if (device < 0 || device >= n)
      throw AllocatorError("Pool for cuda:" + std::to_string(device) + ": this machine has " +
                           std::to_string(n) + " usable CUDA device(s)" + why);
    DeviceGuard g(device_);
    cuda::check_rt(cudaFree(nullptr), "CUDA context creation");
    prop_ = cuda::device_prop(device_);
    access_ = cuda::device_access(device_);
    size_t gran = 0;
    cuda::check(cuda::driver().cuMemGetAllocationGranularity(&gran, &prop_,
                                                             CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                "cuMemGetAllocationGranularity");
    granularity_ = gran;
    cudaDeviceProp p{};
    cuda::check_rt(cudaGetDeviceProperties(&p, device_), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(device_) + " (" + p.name + ")";
    cuda::check_rt(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                   "cudaStreamCreate");
  }

  ~CudaBackend() override {
    DeviceGuard g(device_);
    for (auto e : events_) cudaEventDestroy(e);
    cudaStreamDestroy(stream_);
  }

  uint64_t granularity() const override { return granularity_; }
  std::string describe() const override { return name_; }

  DeviceMemory device_memory() const override {
    DeviceGuard g(device_);
    size_t free_b = 0, total_b = 0;
    cuda::check_rt(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    return {total_b, free_b, total_b - free_b};
  }

  void synchronize() override {
    DeviceGuard g(device_);
    cuda::check_rt(cudaDeviceSynchronize(), "cudaDeviceSynchronize before a release");
  }
  void* reserve(uint64_t bytes) override {
    CUdeviceptr p = 0;
    cuda::check(cuda::driver().cuMemAddressReserve(&p, bytes, granularity_, 0, 0),
                "cuMemAddressReserve");
    return reinterpret_cast<void*>(p);
  }
  void unreserve(void* ptr, uint64_t bytes) noexcept override {
    cuda::driver().cuMemAddressFree(reinterpret_cast<CUdeviceptr>(ptr), bytes);
  }

  void map(Region& r) override {
    DeviceGuard g(device_);
    for (auto& c : r.chunks)
      if (!create_and_map(r, c)) undo_oom(r);
    set_access(r, 0, r.reserved_bytes);
  }

  void release(Region& r) override {
    DeviceGuard g(device_);
    for (auto& c : r.chunks) unmap_and_release(r, c);
  }

  void offload(Region& r) override {
    DeviceGuard g(device_);
    auto spans = copy_spans(r);
    for (size_t s = 0; s < spans.size(); ++s) {
      auto [first, last] = spans[s];
      uint64_t lo = r.chunks[first].offset;
      uint64_t hi = std::min(r.chunks[last - 1].offset + r.chunks[last - 1].bytes, r.bytes);
      if (lo < hi)
        for_each_backup_span(r.backup, lo, hi - lo, [&](char* host, uint64_t off, uint64_t n) {
          cuda::check_rt(cudaMemcpyAsync(host, base(r) + off, n, cudaMemcpyDeviceToHost, stream_),
                         "offload cudaMemcpyAsync");
        });
      cuda::check_rt(cudaEventRecord(event(s), stream_), "cudaEventRecord");
    }
    for (size_t s = 0; s < spans.size(); ++s) {
      cuda::check_rt(cudaEventSynchronize(event(s)), "offload copy");
      for (size_t i = spans[s].first; i < spans[s].second; ++i) unmap_and_release(r, r.chunks[i]);
    }
  }

  void restore(Region& r) override {
    DeviceGuard g(device_);
    for (auto [first, last] : copy_spans(r)) {
      for (size_t i = first; i < last; ++i)
        if (!create_and_map(r, r.chunks[i])) undo_oom(r);
      uint64_t lo = r.chunks[first].offset;
      uint64_t end = r.chunks[last - 1].offset + r.chunks[last - 1].bytes;
      set_access(r, lo, end - lo);
      uint64_t hi = std::min(end, r.bytes);
      if (lo < hi)
        for_each_backup_span(r.backup, lo, hi - lo, [&](char* host, uint64_t off, uint64_t n) {
          cuda::check_rt(cudaMemcpyAsync(base(r) + off, host, n, cudaMemcpyHostToDevice, stream_),
                         "restore cudaMemcpyAsync");
        });
    }
    cuda::check_rt(cudaStreamSynchronize(stream_), "restore copy");
  }

  char* alloc_backup(uint64_t bytes) override {
    DeviceGuard g(device_);
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw AllocatorError("pinned host backup of " + std::to_string(bytes >> 20) +
                           " MiB could not be allocated (" + cudaGetErrorName(e) +
                           "): the host lacks memory for the offload");
    }
    return static_cast<char*>(p);
  }
  void free_backup(char* ptr, uint64_t) noexcept override { cudaFreeHost(ptr); }

 private:
  int device_;
  uint64_t granularity_ = 0;
  std::string name_;
  CUmemAllocationProp prop_{};
  CUmemAccessDesc access_{};
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> events_;

  static char* base(const Region& r) { return static_cast<char*>(r.ptr); }

  cudaEvent_t event(size_t i) {
    while (events_.size() <= i) {
      cudaEvent_t e;
      cuda::check_rt(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      events_.push_back(e);
    }
    return events_[i];
  }

  // Groups of consecutive chunks of at least kCopySpanBytes: [first, last) chunk indices.
  static std::vector<std::pair<size_t, size_t>> copy_spans(const Region& r) {
    std::vector<std::pair<size_t, size_t>> spans;
    size_t first = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < r.chunks.size(); ++i) {
      bytes += r.chunks[i].bytes;
      if (bytes >= kCopySpanBytes || i + 1 == r.chunks.size()) {
        spans.emplace_back(first, i + 1);
        first = i + 1;
        bytes = 0;
      }
    }
    return spans;
  }

  // False when the device has no memory for the chunk; any other failure throws.
  bool create_and_map(Region& r, Chunk& c) {
    if (c.mapped) return true;
    auto& d = cuda::driver();
    CUmemGenericAllocationHandle h = 0;
    CUresult res = d.cuMemCreate(&h, c.bytes, &prop_, 0);
    if (is_oom(res)) return false;
    cuda::check(res, "cuMemCreate");
    res = d.cuMemMap(reinterpret_cast<CUdeviceptr>(base(r) + c.offset), c.bytes, 0, h, 0);
    if (res != CUDA_SUCCESS) {
      d.cuMemRelease(h);
      if (is_oom(res)) return false;
      cuda::check(res, "cuMemMap");
    }
    c.handle = h;
    c.mapped = true;
    return true;
  }

  void unmap_and_release(Region& r, Chunk& c) {
    if (!c.mapped) return;
    auto& d = cuda::driver();
    cuda::check(d.cuMemUnmap(reinterpret_cast<CUdeviceptr>(base(r) + c.offset), c.bytes),
                "cuMemUnmap");
    cuda::check(d.cuMemRelease(CUmemGenericAllocationHandle(c.handle)), "cuMemRelease");
    c.mapped = false;
    c.handle = 0;
  }

  // One cuMemSetAccess over a range of several mappings: far cheaper than one per chunk.
  void set_access(Region& r, uint64_t offset, uint64_t bytes) {
    CUresult res = cuda::driver().cuMemSetAccess(reinterpret_cast<CUdeviceptr>(base(r) + offset),
                                                 bytes, &access_, 1);
    if (is_oom(res)) undo_oom(r);
    cuda::check(res, "cuMemSetAccess");
  }

  [[noreturn]] void undo_oom(Region& r) {
    cudaStreamSynchronize(stream_);  // copies into already-mapped spans must land first
    for (auto& c : r.chunks) unmap_and_release(r, c);
    throw DeviceOutOfMemory{r.reserved_bytes};
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace siesta::allocator
