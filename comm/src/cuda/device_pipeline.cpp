// The bucket phase on a stream-ordered transport (NCCL): two staging buckets on the GPU, three
// streams (pack, comm, unpack) chained by events, so that packing bucket k+1, broadcasting
// bucket k and unpacking bucket k-1 overlap. The host keeps at most two buckets in flight and
// waits for each under the transport's watchdog. Streams, events and the (small) descriptor
// buffer are cached by the sender/receiver; the staging buckets live for one sync.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "../pipeline.hpp"
#include "copy_kernel.hpp"
#include "siesta/comm/error.hpp"

namespace siesta::comm {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw CommError(std::string("weight sync (device pipeline): ") + what + " failed: " +
                    cudaGetErrorString(e));
}

// Drains the streams and frees the staging buckets on every exit path. Draining comes first:
// freeing memory a kernel still reads would be worse than waiting, and after an abort NCCL's
// kernels have been told to stop, so the waits return.
struct StagingGuard {
  DeviceCache& cache;
  void* staging = nullptr;
  ~StagingGuard() {
    cache.drain();
    if (staging) cudaFree(staging);
  }
};

struct BucketWork {
  CopyLaunch launch;
  std::vector<Segment> host_segments;  // runs with one side in host memory
};

BucketWork plan_bucket(const std::vector<Segment>& segs, std::vector<CopySeg>& descriptors) {
  BucketWork w;
  w.launch = append_launch(segs, descriptors);
  for (const auto& s : segs)
    if (!s.on_gpu()) w.host_segments.push_back(s);
  return w;
}

// Runs of a bucket that touch host memory go through synchronous copies, after the stream's
// earlier work (e.g. the wait for a free slot) is done.
void run_host_segments(const BucketWork& w, cudaStream_t s) {
  if (w.host_segments.empty()) return;
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize before host-memory copies");
  for (const auto& seg : w.host_segments) copy_segment(seg);
}
}  // namespace

DeviceCache::DeviceCache(int dev) : device(dev) {
  for (cudaStream_t* st : {&pack, &comm, &unpack})
    check(cudaStreamCreateWithFlags(st, cudaStreamNonBlocking), "cudaStreamCreate");
  for (int i = 0; i < 2; ++i)
    for (cudaEvent_t* e : {&packed[i], &sent[i], &freed[i]})
      check(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
}

void DeviceCache::drain() noexcept {
  for (cudaStream_t st : {pack, comm, unpack})
    if (st) cudaStreamSynchronize(st);
}

DeviceCache::~DeviceCache() {
  drain();
  for (cudaStream_t st : {pack, comm, unpack})
    if (st) cudaStreamDestroy(st);
  for (int i = 0; i < 2; ++i)
    for (cudaEvent_t e : {packed[i], sent[i], freed[i]})
      if (e) cudaEventDestroy(e);
  if (descriptors) cudaFree(descriptors);
}

void run_device_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats) {
  const Manifest& m = *p.m;
  const size_t n = m.num_buckets();
  stats.buckets = n;
  const Device dev = t.device();
  check(cudaSetDevice(dev.index), "cudaSetDevice");
  std::shared_ptr<DeviceCache>& cache = *p.device_cache;
  if (!cache || cache->device != dev.index) cache = std::make_shared<DeviceCache>(dev.index);
  DeviceCache& r = *cache;
  StagingGuard guard{r};

  const bool staged = !p.fused;
  const size_t slot_bytes = staged ? std::min<uint64_t>(m.bucket_bytes, m.stream_bytes) : 0;
  // The copy descriptors hold staging addresses: plan once to count them (null base), then
  // again against the real buckets.
  std::vector<CopySeg> desc;
  std::vector<BucketWork> pack(p.sending ? n : 0), unpack(p.dst.empty() || p.fused ? 0 : n);
  auto slot_at = [&](std::byte* base, size_t k) { return base + (k % 2) * slot_bytes; };
  auto plan_all = [&](std::byte* base) {
    desc.clear();
    for (size_t k = 0; k < n; ++k) {
      if (p.sending)
        pack[k] = plan_bucket(p.fused ? direct_segments(m, k, p.src, p.dst)
                                      : bucket_segments(m, k, p.src, slot_at(base, k), dev, true),
                              desc);
      if (!unpack.empty())
        unpack[k] = plan_bucket(bucket_segments(m, k, p.dst, slot_at(base, k), dev, false), desc);
    }
  };
  plan_all(nullptr);
  const size_t desc_bytes = desc.size() * sizeof(CopySeg);
  std::byte* base = nullptr;
  if (slot_bytes) {
    check(cudaMalloc(&guard.staging, 2 * slot_bytes), "cudaMalloc of two staging buckets");
    base = static_cast<std::byte*>(guard.staging);
  }
  plan_all(base);
  auto slot = [&](size_t k) { return slot_at(base, k); };
  if (desc_bytes > r.descriptor_bytes) {  // grow-only; the streams are idle here
    if (r.descriptors) check(cudaFree(r.descriptors), "cudaFree of copy descriptors");
    r.descriptors = nullptr;
    r.descriptor_bytes = 0;
    check(cudaMalloc(&r.descriptors, desc_bytes), "cudaMalloc of copy descriptors");
    r.descriptor_bytes = desc_bytes;
  }
  CopySeg* dev_desc = r.descriptors;
  if (desc_bytes) {
    // On our stream and waited for: a plain cudaMemcpy from pageable memory may return before
    // its DMA lands, and our non-blocking streams would not wait for it.
    check(cudaMemcpyAsync(dev_desc, desc.data(), desc_bytes, cudaMemcpyHostToDevice, r.pack),
          "cudaMemcpyAsync of copy descriptors");
    check(cudaStreamSynchronize(r.pack), "cudaStreamSynchronize");
  }
  stats.peak_staging_bytes = 2 * slot_bytes + desc_bytes;

  std::vector<cudaEvent_t> done(n);  // the event that says bucket k's slot is free again
  auto notify = [&](size_t k) {
    if (p.opts->on_bucket) p.opts->on_bucket(k, n);
  };
  size_t waited = 0;
  auto wait_bucket = [&](size_t k) {
    t.wait_event(done[k], "bucket " + std::to_string(k + 1) + " of " + std::to_string(n));
    notify(k);
    waited = k + 1;
  };
  for (size_t k = 0; k < n; ++k) {
    const int s = int(k % 2);
    // At most two buckets in flight. Waiting on the host (rather than making the pack or comm
    // stream wait for the unpack) keeps bucket k+1's pack free to overlap bucket k's unpack.
    if (k >= 2) wait_bucket(k - 2);
    if (p.sending) {
      run_host_segments(pack[k], r.pack);
      launch_copy(dev_desc, pack[k].launch, r.pack);
      check(cudaEventRecord(r.packed[s], r.pack), "cudaEventRecord");
      done[k] = r.packed[s];
      if (staged) {
        check(cudaStreamWaitEvent(r.comm, r.packed[s], 0), "cudaStreamWaitEvent");
        t.broadcast_on_stream(slot(k), m.bucket_len(k), p.root, r.comm);
        check(cudaEventRecord(r.sent[s], r.comm), "cudaEventRecord");
        done[k] = r.sent[s];
      }
    } else {
      t.broadcast_on_stream(slot(k), m.bucket_len(k), p.root, r.comm);
      check(cudaEventRecord(r.sent[s], r.comm), "cudaEventRecord");
      done[k] = r.sent[s];
    }
    if (!unpack.empty()) {
      check(cudaStreamWaitEvent(r.unpack, r.sent[s], 0), "cudaStreamWaitEvent");
      run_host_segments(unpack[k], r.unpack);
      launch_copy(dev_desc, unpack[k].launch, r.unpack);
      check(cudaEventRecord(r.freed[s], r.unpack), "cudaEventRecord");
      done[k] = r.freed[s];
    }
  }
  for (size_t k = waited; k < n; ++k) wait_bucket(k);
}

}  // namespace siesta::comm
