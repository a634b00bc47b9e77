// The pool: one table of allocations by address, the per-tag sleep state, the rules of
// sleep/wake (checked before anything changes, so that bad use leaves the state as it was),
// the budget, the host backup pool and the event stream. Backends only move memory.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "backend.hpp"
#include "backup_store.hpp"
#include "siesta/allocator/pool.hpp"

namespace siesta::allocator {

namespace {

std::string human_bytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", double(bytes) / double(1ull << 20));
  return buf;
}

std::string join(const std::vector<Tag>& tags) {
  std::string s;
  for (auto& t : tags) s += (s.empty() ? "" : ",") + t;
  return s;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Backups are carved in page multiples so that pieces stay aligned for DMA.
constexpr uint64_t kBackupAlign = 4096;

}  // namespace

struct TagState {
  bool sleeping = false;
  SleepMode mode = SleepMode::Discard;
};

struct Pool::Impl {
  PoolOptions options;
  std::unique_ptr<Backend> backend;
  BackupStore backup;
  uint64_t chunk_bytes;
  mutable std::mutex mutex;
  std::map<char*, Region> regions;  // by address
  std::map<Tag, TagState> tags;     // a tag exists while allocations carry it
  std::function<void(const PoolEvent&)> listener;
  std::optional<PoolEvent> last;

  Impl(const PoolOptions& o, std::unique_ptr<Backend> b)
      : options(o),
        backend(std::move(b)),
        backup(
            backend->granularity(), [this](uint64_t n) { return backend->alloc_backup(n); },
            [this](char* p, uint64_t n) { backend->free_backup(p, n); }),
        chunk_bytes(round_up(std::max<uint64_t>(o.chunk_bytes, 1), backend->granularity())) {
    if (o.pinned_backup_bytes > 0) backup.ensure_free(o.pinned_backup_bytes);
  }

  ~Impl() {
    try {
      backend->synchronize();
    } catch (...) {
    }
    for (auto& [p, r] : regions) {
      try {
        backend->release(r);
      } catch (...) {
      }
      backend->unreserve(r.ptr, r.reserved_bytes);
    }
  }

  uint64_t mapped_total() const {
    uint64_t n = 0;
    for (auto& [p, r] : regions) n += r.mapped_bytes();
    return n;
  }

  std::vector<Region*> regions_of(const std::vector<Tag>& tags) {
    std::set<Tag> wanted(tags.begin(), tags.end());
    std::vector<Region*> out;
    for (auto& [p, r] : regions)
      if (wanted.count(r.tag)) out.push_back(&r);
    return out;
  }

  std::string known_tags() const {
    std::string s;
    for (auto& [t, st] : tags) s += (s.empty() ? "" : ", ") + t + (st.sleeping ? " (asleep)" : "");
    return s.empty() ? "none" : s;
  }

  // Validates and dedupes a tag list for sleep/wake: every tag well-formed, carried by at
  // least one allocation, and in the expected state.
  std::vector<Tag> checked(const char* op, const std::vector<Tag>& in, bool want_sleeping) {
    if (in.empty()) throw AllocatorError(std::string(op) + "() needs at least one tag");
    std::vector<Tag> out;
    for (auto& t : in) {
      validate_tag(t);
      if (std::find(out.begin(), out.end(), t) != out.end()) continue;
      auto it = tags.find(t);
      if (it == tags.end())
        throw AllocatorError(std::string(op) + "(" + t + "): no allocation in this pool carries tag '" +
                             t + "' (tags here: " + known_tags() + ")");
      if (it->second.sleeping != want_sleeping)
        throw AllocatorError(std::string(op) + "(" + t + "): tag '" + t + "' is already " +
                             (want_sleeping ? "awake" : "asleep") + "; " + op +
                             " is allowed only for " + (want_sleeping ? "sleeping" : "awake") +
                             " tags");
      out.push_back(t);
    }
    return out;
  }

  void check_budget(const std::string& what, uint64_t need) const {
    if (options.capacity_bytes == 0) return;
    uint64_t mapped = mapped_total();
    if (mapped + need > options.capacity_bytes)
      throw AllocatorError(what + " needs " + human_bytes(need) + ", but the pool's budget on " +
                           backend->describe() + " is " + human_bytes(options.capacity_bytes) + " with " +
                           human_bytes(mapped) + " mapped (" + human_bytes(options.capacity_bytes - mapped) +
                           " left): state unchanged");
  }

  [[noreturn]] void throw_oom(const std::string& what, uint64_t need) const {
    auto m = backend->device_memory();
    throw AllocatorError(what + " needs " + human_bytes(need) + ", " + backend->describe() + " has " +
                         human_bytes(m.free_bytes) + " free of " + human_bytes(m.total_bytes) +
                         ": out of device memory, state unchanged; free memory and retry");
  }

  std::vector<Chunk> make_chunks(uint64_t reserved) const {
    std::vector<Chunk> chunks;
    for (uint64_t off = 0; off < reserved; off += chunk_bytes)
      chunks.push_back({off, std::min(chunk_bytes, reserved - off), 0, false});
    return chunks;
  }

  void record(PoolEvent e, std::unique_lock<std::mutex>& lock) {
    if (e.kind == PoolEvent::Kind::Sleep || e.kind == PoolEvent::Kind::Wake) last = e;
    auto l = listener;
    lock.unlock();
    if (l) l(e);
  }
};

std::unique_ptr<Pool> Pool::create(const PoolOptions& options) {
  std::unique_ptr<Backend> backend;
  if (options.device.is_cuda()) {
#ifdef SIESTA_WITH_CUDA
    backend = make_cuda_backend(options.device.index);
#else
    throw AllocatorError("Pool for " + options.device.str() +
                         ": this build has no CUDA support; use Device::cpu()");
#endif
  } else {
    backend = make_host_backend(options.capacity_bytes);
  }
  return std::unique_ptr<Pool>(new Pool(std::make_unique<Impl>(options, std::move(backend))));
}

Pool::Pool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pool::~Pool() = default;

Allocation Pool::allocate(uint64_t bytes, const Tag& tag, const std::string& name) {
  auto& m = *impl_;
  validate_tag(tag);
  std::unique_lock lock(m.mutex);
  std::string what = "allocate('" + name + "', " + tag + ")";
  if (bytes == 0) throw AllocatorError(what + ": size must be > 0 bytes");
  auto ts = m.tags.find(tag);
  if (ts != m.tags.end() && ts->second.sleeping)
    throw AllocatorError(what + ": tag '" + tag + "' is asleep; wake it before allocating in it");
  auto t0 = Clock::now();
  auto before = m.backend->device_memory();
  Region r;
  r.bytes = bytes;
  r.reserved_bytes = round_up(bytes, m.backend->granularity());
  r.tag = tag;
  r.name = name;
  r.chunks = m.make_chunks(r.reserved_bytes);
  m.check_budget(what, r.reserved_bytes);
  r.ptr = m.backend->reserve(r.reserved_bytes);
  try {
    m.backend->map(r);
  } catch (const DeviceOutOfMemory&) {
    m.backend->unreserve(r.ptr, r.reserved_bytes);
    m.throw_oom(what, r.reserved_bytes);
  } catch (...) {
    m.backend->unreserve(r.ptr, r.reserved_bytes);
    throw;
  }
  Allocation a{r.ptr, bytes, tag, name};
  uint64_t reserved = r.reserved_bytes;
  m.regions.emplace(static_cast<char*>(r.ptr), std::move(r));
  m.tags[tag];
  PoolEvent e{PoolEvent::Kind::Allocate, {tag}, name, SleepMode::Discard, reserved, 0,
              ms_since(t0), before, m.backend->device_memory()};
  m.record(std::move(e), lock);
  return a;
}

void Pool::free(const Allocation& a) {
  auto& m = *impl_;
  std::unique_lock lock(m.mutex);
  auto it = m.regions.find(static_cast<char*>(a.ptr));
  if (it == m.regions.end())
    throw AllocatorError("free('" + a.name + "'): pointer is not a live allocation of this pool "
                         "(freed twice, or from another pool)");
  Region& r = it->second;
  if (m.tags[r.tag].sleeping)
    throw AllocatorError("free('" + r.name + "'): its tag '" + r.tag +
                         "' is asleep; wake the tag before freeing its allocations");
  auto t0 = Clock::now();
  auto before = m.backend->device_memory();
  m.backend->synchronize();
  m.backend->release(r);
  m.backend->unreserve(r.ptr, r.reserved_bytes);
  PoolEvent e{PoolEvent::Kind::Free, {r.tag}, r.name, SleepMode::Discard, r.reserved_bytes, 0,
              0, before, {}};
  Tag tag = r.tag;
  m.regions.erase(it);
  bool tag_used = false;
  for (auto& [p, other] : m.regions) tag_used = tag_used || other.tag == tag;
  if (!tag_used) m.tags.erase(tag);
  e.duration_ms = ms_since(t0);
  e.after = m.backend->device_memory();
  m.record(std::move(e), lock);
}

void Pool::sleep(const std::vector<Tag>& tags_in, SleepMode mode) {
  auto& m = *impl_;
  std::unique_lock lock(m.mutex);
  auto tags = m.checked("sleep", tags_in, false);
  auto regions = m.regions_of(tags);
  auto t0 = Clock::now();
  auto before = m.backend->device_memory();
  uint64_t released = 0, copied = 0;
  m.backend->synchronize();
  if (mode == SleepMode::Offload) {
    uint64_t need = 0;
    for (auto* r : regions) need += round_up(r->bytes, kBackupAlign);
    m.backup.ensure_free(need);  // the only step that may fail for lack of host memory
    for (auto* r : regions) r->backup = m.backup.take(round_up(r->bytes, kBackupAlign));
  }
  for (auto* r : regions) {
    released += r->mapped_bytes();
    if (mode == SleepMode::Offload) {
      m.backend->offload(*r);
      copied += r->bytes;
    } else {
      m.backend->release(*r);
    }
  }
  for (auto& t : tags) m.tags[t] = {true, mode};
  PoolEvent e{PoolEvent::Kind::Sleep, tags, "", mode, released, copied, ms_since(t0), before,
              m.backend->device_memory()};
  m.record(std::move(e), lock);
}

void Pool::wake(const std::vector<Tag>& tags_in) {
  auto& m = *impl_;
  std::unique_lock lock(m.mutex);
  auto tags = m.checked("wake", tags_in, true);
  auto regions = m.regions_of(tags);
  std::string what = "wake(" + join(tags) + ")";
  uint64_t need = 0, copied = 0;
  for (auto* r : regions) need += r->reserved_bytes;
  m.check_budget(what, need);
  auto t0 = Clock::now();
  auto before = m.backend->device_memory();
  size_t done = 0;
  try {
    for (; done < regions.size(); ++done) {
      Region& r = *regions[done];
      if (!r.backup.empty()) {
        m.backend->restore(r);
        copied += r.bytes;
      } else {
        m.backend->map(r);
      }
    }
  } catch (const DeviceOutOfMemory&) {
    // Put back the regions this wake already mapped; backups are only returned on success,
    // so the pool is exactly as asleep as before and a later wake restores the same content.
    for (size_t i = 0; i < done; ++i) m.backend->release(*regions[i]);
    m.throw_oom(what, need);
  }
  for (auto* r : regions) {
    m.backup.give(r->backup);
    r->backup.clear();
  }
  for (auto& t : tags) m.tags[t].sleeping = false;
  PoolEvent e{PoolEvent::Kind::Wake, tags, "", SleepMode::Discard, need, copied, ms_since(t0),
              before, m.backend->device_memory()};
  m.record(std::move(e), lock);
}

bool Pool::is_sleeping(const Tag& tag) const {
  validate_tag(tag);
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->tags.find(tag);
  if (it == impl_->tags.end())
    throw AllocatorError("is_sleeping(" + tag + "): no allocation in this pool carries tag '" +
                         tag + "' (tags here: " + impl_->known_tags() + ")");
  return it->second.sleeping;
}

PoolStats Pool::stats() const {
  auto& m = *impl_;
  std::lock_guard lock(m.mutex);
  PoolStats s;
  for (auto& [t, st] : m.tags) {
    TagStats ts;
    ts.tag = t;
    ts.sleeping = st.sleeping;
    for (auto& [p, r] : m.regions) {
      if (r.tag != t) continue;
      ++ts.allocations;
      ts.reserved_bytes += r.reserved_bytes;
      ts.mapped_bytes += r.mapped_bytes();
      ts.backed_up_bytes += r.backed_up_bytes();
    }
    s.tags.push_back(ts);
  }
  s.device = m.backend->device_memory();
  s.granularity_bytes = m.backend->granularity();
  s.chunk_bytes = m.chunk_bytes;
  s.backup_capacity_bytes = m.backup.capacity();
  s.backup_used_bytes = m.backup.used();
  s.last_transition = m.last;
  return s;
}

DeviceMemory Pool::device_memory() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->backend->device_memory();
}

void Pool::set_listener(std::function<void(const PoolEvent&)> listener) {
  std::lock_guard lock(impl_->mutex);
  impl_->listener = std::move(listener);
}

const PoolOptions& Pool::options() const { return impl_->options; }

const char* to_string(SleepMode mode) { return mode == SleepMode::Offload ? "offload" : "discard"; }

const char* to_string(PoolEvent::Kind kind) {
  switch (kind) {
    case PoolEvent::Kind::Allocate: return "allocate";
    case PoolEvent::Kind::Free: return "free";
    case PoolEvent::Kind::Sleep: return "sleep";
    case PoolEvent::Kind::Wake: return "wake";
  }
  return "?";
}

}  // namespace siesta::allocator
