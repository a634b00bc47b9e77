// Host backend for CPU runs and CI: an allocation is an mmap(PROT_NONE) reservation made
// read-write while awake. Sleeping drops the pages with madvise(MADV_DONTNEED), so RSS really
// falls, and turns the range back to PROT_NONE, so that a touch faults into sleep_guard's
// diagnostic instead of silently reading zeros. capacity_bytes plays the device's memory.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "backend.hpp"
#include "siesta/kernels/device.hpp"
#include "sleep_guard.hpp"

namespace siesta::allocator {

namespace {

[[noreturn]] void throw_errno(const char* what, uint64_t bytes) {
  throw AllocatorError(std::string(what) + " of " + std::to_string(bytes) +
                       " bytes failed: " + std::strerror(errno));
}

class HostBackend final : public Backend {
 public:
  explicit HostBackend(uint64_t capacity) : capacity_(capacity) { sleep_guard::install(); }

  uint64_t granularity() const override { return uint64_t(sysconf(_SC_PAGESIZE)); }
  std::string describe() const override { return "cpu"; }

  DeviceMemory device_memory() const override {
    if (capacity_ > 0) return {capacity_, capacity_ - mapped_, mapped_};
    auto h = kernels::host_memory();
    return {h.total_bytes, h.available_bytes, h.total_bytes - h.available_bytes};
  }

  void synchronize() override {}
  void* reserve(uint64_t bytes) override {
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap reservation", bytes);
    return p;
  }
  void unreserve(void* ptr, uint64_t bytes) noexcept override {
    sleep_guard::remove(ptr);
    munmap(ptr, bytes);
  }

  void map(Region& r) override {
    if (mprotect(r.ptr, r.reserved_bytes, PROT_READ | PROT_WRITE) != 0)
      throw_errno("mprotect(read|write)", r.reserved_bytes);
    sleep_guard::remove(r.ptr);
    for (auto& c : r.chunks) c.mapped = true;
    mapped_ += r.reserved_bytes;
  }

  void release(Region& r) override {
    release_chunks(r, 0, r.chunks.size());
    protect(r);
  }

  void offload(Region& r) override {
    for (size_t i = 0; i < r.chunks.size(); ++i) {
      auto& c = r.chunks[i];
      uint64_t end = std::min(c.offset + c.bytes, r.bytes);
      if (c.offset < end)
        for_each_backup_span(r.backup, c.offset, end - c.offset, [&](char* host, uint64_t off,
                                                                     uint64_t n) {
          std::memcpy(host, static_cast<char*>(r.ptr) + off, n);
        });
      release_chunks(r, i, i + 1);  // drop each chunk as soon as it is copied: lower peak RSS
    }
    protect(r);
  }

  void restore(Region& r) override {
    map(r);
    for_each_backup_span(r.backup, 0, r.bytes, [&](char* host, uint64_t off, uint64_t n) {
      std::memcpy(static_cast<char*>(r.ptr) + off, host, n);
    });
  }

  char* alloc_backup(uint64_t bytes) override {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_errno("host backup mmap", bytes);
    return static_cast<char*>(p);
  }
  void free_backup(char* ptr, uint64_t bytes) noexcept override { munmap(ptr, bytes); }

 private:
  uint64_t capacity_;
  uint64_t mapped_ = 0;

  void release_chunks(Region& r, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      auto& c = r.chunks[i];
      if (!c.mapped) continue;
      if (madvise(static_cast<char*>(r.ptr) + c.offset, c.bytes, MADV_DONTNEED) != 0)
        throw_errno("madvise(DONTNEED)", c.bytes);
      c.mapped = false;
      mapped_ -= c.bytes;
    }
  }
  void protect(Region& r) {
    if (mprotect(r.ptr, r.reserved_bytes, PROT_NONE) != 0)
      throw_errno("mprotect(none)", r.reserved_bytes);
    sleep_guard::add(r.ptr, r.reserved_bytes, r.name, r.tag);
  }
};

}  // namespace

std::unique_ptr<Backend> make_host_backend(uint64_t capacity_bytes) {
  return std::make_unique<HostBackend>(capacity_bytes);
}

}  // namespace siesta::allocator
