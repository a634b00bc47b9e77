// Manifest layout, (de)serialisation, checksum and the receiver's check against its tensors.
#include "manifest.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "siesta/comm/error.hpp"

namespace siesta::comm {

namespace {
bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

struct Writer {
  std::vector<std::byte> out;
  void raw(const void* p, size_t n) {
    auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  }
  void u64(uint64_t v) { raw(&v, 8); }
  void str(const std::string& s) { u64(s.size()); raw(s.data(), s.size()); }
};

struct Reader {
  const std::byte* p;
  size_t left;
  void raw(void* dst, size_t n) {
    if (n > left) throw CommError("weight sync: the manifest is truncated (needs " +
                                  std::to_string(n) + " more bytes, " + std::to_string(left) +
                                  " left)");
    std::memcpy(dst, p, n);
    p += n;
    left -= n;
  }
  uint64_t u64() { uint64_t v; raw(&v, 8); return v; }
  std::string str() {
    uint64_t n = u64();
    if (n > left) throw CommError("weight sync: the manifest holds a string longer than itself");
    std::string s(n, '\0');
    raw(s.data(), n);
    return s;
  }
};
}  // namespace

uint64_t fnv1a64(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

Manifest plan_manifest(const std::vector<NamedTensor>& sources, DType engine, size_t bucket_bytes) {
  if (!is_float(engine))
    throw CommError("weight sync: engine dtype " + std::string(dtype_name(engine)) +
                    " (allowed: F32, BF16, F16)");
  if (bucket_bytes == 0 || bucket_bytes % kStreamAlign)
    throw CommError("weight sync: bucket size " + std::to_string(bucket_bytes) +
                    " bytes (allowed: a positive multiple of " + std::to_string(kStreamAlign) + ")");
  Manifest m;
  m.dtype = engine;
  m.bucket_bytes = bucket_bytes;
  std::set<std::string> seen;
  uint64_t off = 0;
  for (const auto& s : sources) {
    if (s.name.empty()) throw CommError("weight sync: a source tensor has an empty name");
    if (!seen.insert(s.name).second)
      throw CommError("weight sync: source tensor '" + s.name + "' appears twice");
    if (!is_float(s.view.dtype))
      throw CommError("weight sync: source tensor '" + s.name + "' has dtype " +
                      std::string(dtype_name(s.view.dtype)) + " (allowed: F32, BF16, F16)");
    if (s.view.numel() > 0 && !s.view.data)
      throw CommError("weight sync: source tensor '" + s.name + "' has no data");
    ManifestEntry e{s.name, engine, s.view.shape, 0, 0};
    e.bytes = uint64_t(s.view.numel()) * dtype_size(engine);
    off = (off + kStreamAlign - 1) / kStreamAlign * kStreamAlign;
    e.offset = off;
    off += e.bytes;
    m.payload_bytes += e.bytes;
    m.entries.push_back(std::move(e));
  }
  m.stream_bytes = off;
  return m;
}

std::vector<std::byte> serialize(const Manifest& m) {
  Writer w;
  w.u64(uint64_t(m.dtype));
  w.u64(m.bucket_bytes);
  w.u64(m.stream_bytes);
  w.u64(m.payload_bytes);
  w.u64(m.entries.size());
  for (const auto& e : m.entries) {
    w.str(e.name);
    w.u64(uint64_t(e.dtype));
    w.u64(e.shape.size());
    for (int64_t d : e.shape) w.u64(uint64_t(d));
    w.u64(e.offset);
    w.u64(e.bytes);
  }
  return std::move(w.out);
}

Manifest parse_manifest(const std::byte* data, size_t bytes) {
  Reader r{data, bytes};
  Manifest m;
  m.dtype = DType(r.u64());
  m.bucket_bytes = r.u64();
  m.stream_bytes = r.u64();
  m.payload_bytes = r.u64();
  if (!is_float(m.dtype))
    throw CommError("weight sync: the manifest names dtype #" + std::to_string(int(m.dtype)) +
                    " (allowed: F32, BF16, F16)");
  uint64_t n = r.u64();
  if (n > bytes) throw CommError("weight sync: the manifest claims more tensors than it has bytes");
  uint64_t end = 0, payload = 0;
  for (uint64_t i = 0; i < n; ++i) {
    ManifestEntry e;
    e.name = r.str();
    e.dtype = DType(r.u64());
    uint64_t rank = r.u64();
    if (rank > 16) throw CommError("weight sync: manifest tensor '" + e.name + "' has rank " +
                                   std::to_string(rank) + " (allowed: up to 16)");
    for (uint64_t d = 0; d < rank; ++d) e.shape.push_back(int64_t(r.u64()));
    e.offset = r.u64();
    e.bytes = r.u64();
    if (e.dtype != m.dtype || e.bytes != uint64_t(numel(e.shape)) * dtype_size(e.dtype) ||
        e.offset < end || e.offset % kStreamAlign)
      throw CommError("weight sync: manifest entry '" + e.name + "' is inconsistent (dtype " +
                      std::string(dtype_name(e.dtype)) + ", shape " + shape_str(e.shape) +
                      ", offset " + std::to_string(e.offset) + ", " + std::to_string(e.bytes) +
                      " bytes)");
    end = e.offset + e.bytes;
    payload += e.bytes;
    m.entries.push_back(std::move(e));
  }
  if (end != m.stream_bytes || payload != m.payload_bytes || m.bucket_bytes == 0 ||
      m.bucket_bytes % kStreamAlign || r.left != 0)
    throw CommError("weight sync: the manifest's totals do not add up (stream " +
                    std::to_string(m.stream_bytes) + " bytes, entries end at " +
                    std::to_string(end) + ")");
  return m;
}

std::string check_destinations(const Manifest& m, const std::vector<NamedTensor>& dst) {
  std::map<std::string, const TensorView*> by_name;
  std::vector<std::string> problems;
  for (const auto& d : dst)
    if (!by_name.emplace(d.name, &d.view).second)
      problems.push_back("destination '" + d.name + "' appears twice");
  std::set<std::string> in_manifest;
  for (const auto& e : m.entries) {
    in_manifest.insert(e.name);
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      problems.push_back("tensor '" + e.name + "' " + shape_str(e.shape) +
                         " is in the manifest but this rank has no destination of that name");
      continue;
    }
    const TensorView& v = *it->second;
    if (v.shape != e.shape)
      problems.push_back("tensor '" + e.name + "': shape " + shape_str(e.shape) +
                         " in the manifest, " + shape_str(v.shape) + " at this rank");
    else if (v.dtype != e.dtype)
      problems.push_back("tensor '" + e.name + "': dtype " + std::string(dtype_name(e.dtype)) +
                         " in the manifest, " + std::string(dtype_name(v.dtype)) + " at this rank");
    else if (v.numel() > 0 && !v.data)
      problems.push_back("destination '" + e.name + "' has no data");
  }
  for (const auto& d : dst)
    if (!in_manifest.count(d.name))
      problems.push_back("destination '" + d.name + "' " + shape_str(d.view.shape) +
                         " is not in the manifest");
  if (problems.empty()) return {};
  std::string r = std::to_string(problems.size()) + " mismatch" +
                  (problems.size() > 1 ? "es" : "") + ": ";
  for (size_t i = 0; i < problems.size() && i < 4; ++i) r += (i ? "; " : "") + problems[i];
  if (problems.size() > 4) r += "; ...";
  return r;
}

std::vector<const TensorView*> in_manifest_order(const Manifest& m,
                                                 const std::vector<NamedTensor>& tensors) {
  std::map<std::string, const TensorView*> by_name;
  for (const auto& t : tensors) by_name.emplace(t.name, &t.view);
  std::vector<const TensorView*> r;
  for (const auto& e : m.entries) r.push_back(by_name.at(e.name));
  return r;
}

namespace {
// Calls f(entry index, first element, element count, offset in bucket) for bucket k's runs.
template <class F>
void for_each_run(const Manifest& m, size_t k, F&& f) {
  uint64_t b0 = k * m.bucket_bytes, b1 = b0 + m.bucket_len(k);
  size_t es = dtype_size(m.dtype);
  // Entries are sorted by offset: binary search for the first that ends after b0.
  auto it = std::partition_point(m.entries.begin(), m.entries.end(),
                                 [&](const ManifestEntry& e) { return e.offset + e.bytes <= b0; });
  for (; it != m.entries.end() && it->offset < b1; ++it) {
    uint64_t lo = std::max(it->offset, b0), hi = std::min(it->offset + it->bytes, b1);
    if (hi <= lo) continue;
    f(size_t(it - m.entries.begin()), (lo - it->offset) / es, (hi - lo) / es, lo - b0);
  }
}
}  // namespace

std::vector<Segment> bucket_segments(const Manifest& m, size_t k,
                                     const std::vector<const TensorView*>& tensors, void* bucket,
                                     Device bucket_dev, bool to_bucket) {
  std::vector<Segment> segs;
  for_each_run(m, k, [&](size_t i, uint64_t first, uint64_t n, uint64_t boff) {
    const TensorView& t = *tensors[i];
    auto* tp = static_cast<std::byte*>(t.data) + first * dtype_size(t.dtype);
    auto* bp = static_cast<std::byte*>(bucket) + boff;
    if (to_bucket)
      segs.push_back({tp, t.device, t.dtype, bp, bucket_dev, m.dtype, n});
    else
      segs.push_back({bp, bucket_dev, m.dtype, tp, t.device, t.dtype, n});
  });
  return segs;
}

std::vector<Segment> direct_segments(const Manifest& m, size_t k,
                                     const std::vector<const TensorView*>& src,
                                     const std::vector<const TensorView*>& dst) {
  std::vector<Segment> segs;
  for_each_run(m, k, [&](size_t i, uint64_t first, uint64_t n, uint64_t) {
    const TensorView& s = *src[i];
    const TensorView& d = *dst[i];
    segs.push_back({static_cast<std::byte*>(s.data) + first * dtype_size(s.dtype), s.device,
                    s.dtype, static_cast<std::byte*>(d.data) + first * dtype_size(d.dtype),
                    d.device, d.dtype, n});
  });
  return segs;
}

}  // namespace siesta::comm
