// The bucket phase on transports without device streams (the host transport): two staging
// buckets in host memory; a helper thread packs bucket k+1 (sender) or unpacks bucket k-1
// (receiver) while the calling thread moves bucket k through the transport.
#include <future>
#include <memory>

#include "pipeline.hpp"
#include "siesta/comm/error.hpp"

namespace siesta::comm {

namespace {
void copy_all(const std::vector<Segment>& segs) {
  for (const auto& s : segs) copy_segment(s);
}
}  // namespace

void run_host_pipeline(Transport& t, const SyncPlan& p, SyncStats& stats) {
  const Manifest& m = *p.m;
  const size_t n = m.num_buckets();
  stats.buckets = n;
  auto notify = [&](size_t k) {
    if (p.opts->on_bucket) p.opts->on_bucket(k, n);
  };
  if (p.fused) {  // world 1: the "broadcast" is the copy itself
    for (size_t k = 0; k < n; ++k) {
      copy_all(direct_segments(m, k, p.src, p.dst));
      notify(k);
    }
    return;
  }
  const size_t slot_bytes = std::min<uint64_t>(m.bucket_bytes, m.stream_bytes);
  // Declared before the futures: a future's destructor waits for its task, which may still be
  // writing into staging when an error unwinds the stack.
  std::unique_ptr<std::byte[]> staging(new std::byte[2 * slot_bytes]);
  stats.peak_staging_bytes = 2 * slot_bytes;
  auto slot = [&](size_t k) { return staging.get() + (k % 2) * slot_bytes; };
  const Device cpu = Device::cpu();
  std::future<void> packed[2], unpacked[2];

  if (p.sending) {
    auto pack = [&](size_t k) {
      return std::async(std::launch::async,
                        [&, k] { copy_all(bucket_segments(m, k, p.src, slot(k), cpu, true)); });
    };
    if (n) packed[0] = pack(0);
    for (size_t k = 0; k < n; ++k) {
      packed[k % 2].get();
      if (k + 1 < n) {
        // Bucket k+1 reuses the slot of bucket k-1: its local unpack must be done.
        if (unpacked[(k + 1) % 2].valid()) unpacked[(k + 1) % 2].get();
        packed[(k + 1) % 2] = pack(k + 1);
      }
      t.broadcast(slot(k), m.bucket_len(k), p.root, cpu);
      if (!p.dst.empty())
        unpacked[k % 2] = std::async(std::launch::async, [&, k] {
          copy_all(bucket_segments(m, k, p.dst, slot(k), cpu, false));
        });
      notify(k);
    }
  } else {
    for (size_t k = 0; k < n; ++k) {
      if (unpacked[k % 2].valid()) unpacked[k % 2].get();  // slot free again
      t.broadcast(slot(k), m.bucket_len(k), p.root, cpu);
      unpacked[k % 2] = std::async(std::launch::async, [&, k] {
        copy_all(bucket_segments(m, k, p.dst, slot(k), cpu, false));
      });
      notify(k);
    }
  }
  for (auto& f : unpacked)
    if (f.valid()) f.get();
}

}  // namespace siesta::comm

#ifndef SIESTA_WITH_CUDA
namespace siesta::comm {
void run_device_pipeline(Transport&, const SyncPlan&, SyncStats&) {
  throw CommError("weight sync: a stream-ordered transport needs a CUDA build");
}
}  // namespace siesta::comm
#endif
