// The weight-sync protocol: preamble and manifest from the root, a vote in which every rank
// accepts or rejects it (so a mismatch is reported on all ranks and nothing moves), then the
// bucket phase (pipeline.hpp) and a commit vote. A failure in the bucket phase aborts the
// transport, so that every rank ends with an error instead of waiting for the lost one.
#include "siesta/comm/weight_sync.hpp"

#include <chrono>
#include <cstring>

#include "manifest.hpp"
#include "pipeline.hpp"
#include "siesta/comm/error.hpp"

namespace siesta::comm {

namespace {
constexpr char kMagic[8] = {'S', 'I', 'E', 'S', 'T', 'A', 'W', 'S'};
constexpr uint32_t kVersion = 1;

// Fixed size, so receivers know how much to expect before they know anything else.
struct Preamble {
  char magic[8] = {};
  uint32_t version = kVersion;
  uint32_t sender_error = 0;   // 1: the body is the sender's error message, not a manifest
  uint64_t body_bytes = 0;
  uint64_t checksum = 0;       // FNV-1a 64 of the body
  uint64_t reserved[4] = {};
};
static_assert(sizeof(Preamble) == 64);

struct Vote {
  uint32_t ok = 1;
  char reason[252] = {};
};

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Every rank says whether it accepts the manifest; returns the rejections (empty: all agree).
std::string vote(Transport& t, const std::string& my_problem) {
  std::string rejected;
  for (int r = 0; r < t.world_size(); ++r) {
    Vote v;
    if (r == t.rank() && !my_problem.empty()) {
      v.ok = 0;
      std::strncpy(v.reason, my_problem.c_str(), sizeof v.reason - 1);
    }
    t.broadcast(&v, sizeof v, r, Device::cpu());
    if (!v.ok)
      rejected += (rejected.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
                  " rejected the manifest: " + std::string(v.reason, strnlen(v.reason, sizeof v.reason));
  }
  return rejected;
}

void run_buckets(Transport& t, const SyncPlan& p, SyncStats& stats) {
  try {
    if (t.stream_ordered()) run_device_pipeline(t, p, stats);
    else run_host_pipeline(t, p, stats);
    // Commit: every rank confirms it has all buckets, so that no rank reports success (and
    // no engine reports valid weights) while a peer was lost halfway.
    if (std::string failed = vote(t, ""); !failed.empty()) throw CommError(failed);
  } catch (const std::exception& e) {
    std::string why = std::string("weight sync aborted on rank ") + std::to_string(t.rank()) +
                      " during the bucket phase: " + e.what();
    t.abort(why);
    throw CommError(why);
  }
}
}  // namespace

WeightSender::WeightSender(Transport& t, SyncOptions o) : t_(t), opts_(std::move(o)) {}

SyncStats WeightSender::send(const std::vector<NamedTensor>& sources, WeightReceiver* local) {
  auto t0 = Clock::now();
  if (t_.rank() != opts_.root)
    throw CommError("weight sync: send() on rank " + std::to_string(t_.rank()) +
                    ", but the root is rank " + std::to_string(opts_.root) +
                    " (other ranks call WeightReceiver::receive)");
  if (local) local->valid_ = false;
  Manifest m;
  std::vector<std::byte> body;
  Preamble pre;
  std::memcpy(pre.magic, kMagic, 8);
  std::string error;
  try {
    m = plan_manifest(sources, opts_.engine_dtype, opts_.bucket_bytes);
    body = serialize(m);
  } catch (const CommError& e) {
    error = e.what();
    pre.sender_error = 1;
    body.assign(reinterpret_cast<const std::byte*>(error.data()),
                reinterpret_cast<const std::byte*>(error.data()) + error.size());
  }
  pre.body_bytes = body.size();
  pre.checksum = fnv1a64(body.data(), body.size());
  // Tell the receivers even when the sources are bad: they fail with the reason, not a timeout.
  t_.broadcast(&pre, sizeof pre, opts_.root, Device::cpu());
  t_.broadcast(body.data(), body.size(), opts_.root, Device::cpu());
  if (!error.empty()) throw CommError(error);

  std::string mine = local ? check_destinations(m, local->dst_) : "";
  if (std::string rejected = vote(t_, mine); !rejected.empty())
    throw CommError("weight sync aborted before any weights moved: " + rejected);

  SyncPlan p;
  p.m = &m;
  p.root = opts_.root;
  p.sending = true;
  p.src = in_manifest_order(m, sources);
  if (local) p.dst = in_manifest_order(m, local->dst_);
  p.fused = local && t_.world_size() == 1 && opts_.fuse_local;
  p.opts = &opts_;
  p.device_cache = &cache_;
  SyncStats st;
  st.bytes = m.payload_bytes;
  st.bucket_bytes = m.bucket_bytes;
  st.fused_local = p.fused;
  run_buckets(t_, p, st);
  if (local) local->valid_ = true;
  st.seconds = since(t0);
  return st;
}

WeightReceiver::WeightReceiver(Transport& t, std::vector<NamedTensor> dst, SyncOptions o)
    : t_(t), dst_(std::move(dst)), opts_(std::move(o)) {}

SyncStats WeightReceiver::receive() {
  auto t0 = Clock::now();
  valid_ = false;  // from the first byte on, the destinations may be half old, half new
  if (t_.rank() == opts_.root)
    throw CommError("weight sync: receive() on the root rank " + std::to_string(opts_.root) +
                    "; the root passes its receiver to WeightSender::send as `local`");
  Preamble pre;
  t_.broadcast(&pre, sizeof pre, opts_.root, Device::cpu());
  if (std::memcmp(pre.magic, kMagic, 8) != 0 || pre.version != kVersion) {
    std::string why = "weight sync: rank " + std::to_string(t_.rank()) +
                      " got a preamble that is not siesta weight-sync version " +
                      std::to_string(kVersion) + " (version " + std::to_string(pre.version) + ")";
    t_.abort(why);  // the body size cannot be trusted, so the ranks cannot stay in step
    throw CommError(why);
  }
  std::vector<std::byte> body(pre.body_bytes);
  t_.broadcast(body.data(), body.size(), opts_.root, Device::cpu());
  if (pre.sender_error)
    throw CommError("weight sync: the sender (rank " + std::to_string(opts_.root) +
                    ") refused to start: " + std::string(reinterpret_cast<char*>(body.data()), body.size()));

  std::string mine;
  Manifest m;
  uint64_t sum = fnv1a64(body.data(), body.size());
  if (sum != pre.checksum) {
    mine = "manifest checksum " + std::to_string(sum) + " differs from the sender's " +
           std::to_string(pre.checksum) + " (corrupted in transit)";
  } else {
    try {
      m = parse_manifest(body.data(), body.size());
      mine = check_destinations(m, dst_);
    } catch (const CommError& e) {
      mine = e.what();
    }
  }
  if (std::string rejected = vote(t_, mine); !rejected.empty())
    throw CommError("weight sync aborted before any weights moved: " + rejected);

  SyncPlan p;
  p.m = &m;
  p.root = opts_.root;
  p.dst = in_manifest_order(m, dst_);
  p.opts = &opts_;
  p.device_cache = &cache_;
  SyncStats st;
  st.bytes = m.payload_bytes;
  st.bucket_bytes = m.bucket_bytes;
  run_buckets(t_, p, st);
  valid_ = true;
  st.seconds = since(t0);
  return st;
}

}  // namespace siesta::comm
