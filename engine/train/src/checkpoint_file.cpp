// Atomic checkpoint files: layout
//   preamble (48 B): magic "SIESTACK", version u32, flags u32, index_offset u64,
//                    index_bytes u64, index_checksum u64, preamble_checksum u64
//   section data, each starting at a 64-byte boundary
//   index: meta (config hash, step, rng, data position, extra) and per section
//          (name, offset, bytes, checksum)
// The preamble is written last (pwrite at 0), so a file cut short anywhere fails validation.
#include "siesta/train/checkpoint_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "siesta/model/atomic_file.hpp"
#include "siesta/model/config.hpp"  // ModelError
#include "siesta/train/error.hpp"

namespace siesta::train {
namespace {

constexpr char kMagic[8] = {'S', 'I', 'E', 'S', 'T', 'A', 'C', 'K'};
constexpr size_t kPreambleBytes = 48;
constexpr size_t kChunkBytes = size_t(16) << 20;
constexpr uint64_t kAlign = 64;

std::string sys_error(const std::string& what, const std::filesystem::path& p) {
  return what + " '" + p.string() + "' failed: " + std::strerror(errno);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t hash_bytes(const void* p, size_t n) {
  Checksum c;
  c.update(p, n);
  return c.digest();
}

// Minimal little-endian serializer for the index.
struct Writer {
  std::string buf;
  void u32(uint32_t v) { buf.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), 8); }
  void str(const std::string& s) {
    u64(s.size());
    buf.append(s);
  }
};

struct Reader {
  const std::string& buf;
  size_t pos = 0;
  const std::filesystem::path& path;
  void need(size_t n) {
    if (pos + n > buf.size())
      throw TrainError("checkpoint '" + path.string() + "' is corrupt: index ends early (wanted " +
                       std::to_string(n) + " bytes at " + std::to_string(pos) + " of " +
                       std::to_string(buf.size()) + ")");
  }
  uint32_t u32() {
    need(4);
    uint32_t v;
    std::memcpy(&v, buf.data() + pos, 4);
    pos += 4;
    return v;
  }
  uint64_t u64() {
    need(8);
    uint64_t v;
    std::memcpy(&v, buf.data() + pos, 8);
    pos += 8;
    return v;
  }
  std::string str() {
    uint64_t n = u64();
    need(n);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

void read_all(int fd, void* data, size_t n, uint64_t offset, const std::filesystem::path& p) {
  char* c = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, c, n, off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw TrainError(sys_error("reading checkpoint", p));
    if (r == 0)
      throw TrainError("checkpoint '" + p.string() + "' is truncated (read past the end at " +
                       std::to_string(offset) + ")");
    c += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
}

}  // namespace

// ---- checksum -------------------------------------------------------------------------

void Checksum::block(const unsigned char* p) {
  for (int i = 0; i < 4; ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    lanes_[i] = rotl(lanes_[i] + w * 0xc2b2ae3d27d4eb4full, 31) * 0x9e3779b97f4a7c15ull;
  }
}

void Checksum::update(const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += n;
  if (tail_n_) {
    size_t take = std::min(n, 32 - tail_n_);
    std::memcpy(tail_ + tail_n_, p, take);
    tail_n_ += take;
    p += take;
    n -= take;
    if (tail_n_ < 32) return;
    block(tail_);
    tail_n_ = 0;
  }
  for (; n >= 32; p += 32, n -= 32) block(p);
  std::memcpy(tail_, p, n);
  tail_n_ = n;
}

uint64_t Checksum::digest() const {
  uint64_t l[4] = {lanes_[0], lanes_[1], lanes_[2], lanes_[3]};
  unsigned char last[32] = {};
  std::memcpy(last, tail_, tail_n_);
  for (int i = 0; i < 4; ++i) {
    uint64_t w;
    std::memcpy(&w, last + 8 * i, 8);
    l[i] = rotl(l[i] + w * 0xc2b2ae3d27d4eb4full, 31) * 0x9e3779b97f4a7c15ull;
  }
  uint64_t h = total_ * 0x27d4eb2f165667c5ull;
  for (int i = 0; i < 4; ++i) h = rotl(h ^ (l[i] * 0x165667b19e3779f9ull), 27) * 0x9e3779b97f4a7c15ull;
  h ^= h >> 29;
  return h;
}

// ---- writing --------------------------------------------------------------------------

void write_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                      const std::vector<SectionSource>& sections) {
  auto fill = [&](int fd, const std::filesystem::path& tmp) {
    Writer index;
    index.u64(meta.config_hash);
    index.u64(meta.step);
    for (uint64_t w : meta.rng) index.u64(w);
    index.u64(meta.data_position);
    index.str(meta.extra);
    index.u64(sections.size());
    std::unique_ptr<char[]> chunk(new char[kChunkBytes]);
    uint64_t offset = kPreambleBytes;
    for (const auto& s : sections) {
      offset = (offset + kAlign - 1) / kAlign * kAlign;
      Checksum sum;
      for (uint64_t done = 0; done < s.bytes;) {
        size_t n = size_t(std::min<uint64_t>(kChunkBytes, s.bytes - done));
        s.read(done, chunk.get(), n);
        sum.update(chunk.get(), n);
        model::write_all_at(fd, chunk.get(), n, offset + done, tmp);
        done += n;
      }
      index.str(s.name);
      index.u64(offset);
      index.u64(s.bytes);
      index.u64(sum.digest());
      offset += s.bytes;
    }
    model::write_all_at(fd, index.buf.data(), index.buf.size(), offset, tmp);

    Writer pre;
    pre.buf.append(kMagic, 8);
    pre.u32(kCheckpointVersion);
    pre.u32(0);
    pre.u64(offset);
    pre.u64(index.buf.size());
    pre.u64(hash_bytes(index.buf.data(), index.buf.size()));
    pre.u64(hash_bytes(pre.buf.data(), pre.buf.size()));
    model::write_all_at(fd, pre.buf.data(), pre.buf.size(), 0, tmp);
  };
  try {
    model::replace_file_atomically(path, fill);
  } catch (const model::ModelError& e) {  // the file system's refusal, in this layer's type
    throw TrainError(std::string("writing checkpoint: ") + e.what());
  }
}

// ---- reading --------------------------------------------------------------------------

CheckpointReader::CheckpointReader(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw TrainError(sys_error("opening checkpoint", path));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw TrainError(sys_error("stat of checkpoint", path));
    const uint64_t file_bytes = uint64_t(st.st_size);
    const std::string bad = "checkpoint '" + path.string() + "' is corrupt or not a checkpoint: ";
    if (file_bytes < kPreambleBytes)
      throw TrainError(bad + "only " + std::to_string(file_bytes) + " bytes (a checkpoint has " +
                       "at least " + std::to_string(kPreambleBytes) + ")");
    std::string pre(kPreambleBytes, '\0');
    read_all(fd_, pre.data(), kPreambleBytes, 0, path);
    if (std::memcmp(pre.data(), kMagic, 8) != 0)
      throw TrainError(bad + "magic bytes are not SIESTACK");
    Reader r{pre, 8, path};
    const uint32_t version = r.u32();
    if (version != kCheckpointVersion)
      throw TrainError("checkpoint '" + path.string() + "' has format version " +
                       std::to_string(version) + "; this build reads version " +
                       std::to_string(kCheckpointVersion) +
                       " (the parameter layout differs); resume it with the build that wrote it");
    r.u32();
    const uint64_t index_offset = r.u64(), index_bytes = r.u64(), index_sum = r.u64();
    const uint64_t pre_sum = r.u64();
    if (pre_sum != hash_bytes(pre.data(), 40)) throw TrainError(bad + "preamble checksum mismatch");
    if (index_offset + index_bytes != file_bytes)
      throw TrainError(bad + "size " + std::to_string(file_bytes) + " bytes, the preamble says " +
                       std::to_string(index_offset + index_bytes) + " (truncated or appended)");
    std::string index(index_bytes, '\0');
    read_all(fd_, index.data(), index_bytes, index_offset, path);
    if (hash_bytes(index.data(), index.size()) != index_sum)
      throw TrainError(bad + "index checksum mismatch");
    Reader ir{index, 0, path};
    meta_.config_hash = ir.u64();
    meta_.step = ir.u64();
    for (auto& w : meta_.rng) w = ir.u64();
    meta_.data_position = ir.u64();
    meta_.extra = ir.str();
    const uint64_t n = ir.u64();
    for (uint64_t i = 0; i < n; ++i) {
      Entry e;
      e.name = ir.str();
      e.offset = ir.u64();
      e.bytes = ir.u64();
      e.checksum = ir.u64();
      if (e.offset < kPreambleBytes || e.offset + e.bytes > index_offset)
        throw TrainError(bad + "section '" + e.name + "' lies outside the data area");
      entries_.push_back(std::move(e));
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

CheckpointReader::~CheckpointReader() {
  if (fd_ >= 0) ::close(fd_);
}

void CheckpointReader::expect_config_hash(uint64_t hash, const std::string& what) const {
  if (meta_.config_hash != hash)
    throw TrainError("checkpoint '" + path_.string() + "' was written for configuration hash " +
                     std::to_string(meta_.config_hash) + "; this trainer has " +
                     std::to_string(hash) + " (" + what + "); refusing to load a mismatched "
                     "checkpoint");
}

const CheckpointReader::Entry& CheckpointReader::entry(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return e;
  std::string names;
  for (const auto& e : entries_) names += (names.empty() ? "" : ", ") + e.name;
  throw TrainError("checkpoint '" + path_.string() + "' has no section '" + name +
                   "' (it has: " + names + ")");
}

bool CheckpointReader::has_section(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.name == name; });
}

uint64_t CheckpointReader::section_bytes(const std::string& name) const {
  return entry(name).bytes;
}

void CheckpointReader::read_section(
    const std::string& name,
    const std::function<void(uint64_t offset, const void* src, size_t n)>& sink) const {
  const Entry& e = entry(name);
  std::unique_ptr<char[]> chunk(new char[size_t(std::min<uint64_t>(kChunkBytes, e.bytes) + 1)]);
  Checksum sum;
  for (uint64_t done = 0; done < e.bytes;) {
    size_t n = size_t(std::min<uint64_t>(kChunkBytes, e.bytes - done));
    read_all(fd_, chunk.get(), n, e.offset + done, path_);
    sum.update(chunk.get(), n);
    if (sink) sink(done, chunk.get(), n);
    done += n;
  }
  if (sum.digest() != e.checksum)
    throw TrainError("checkpoint '" + path_.string() + "' is corrupt: section '" + name +
                     "' checksum mismatch");
}

void CheckpointReader::read_section(const std::string& name, void* dst, uint64_t bytes) const {
  const Entry& e = entry(name);
  if (e.bytes != bytes)
    throw TrainError("checkpoint '" + path_.string() + "': section '" + name + "' holds " +
                     std::to_string(e.bytes) + " bytes, the destination " +
                     std::to_string(bytes));
  read_section(name, [dst](uint64_t off, const void* src, size_t n) {
    std::memcpy(static_cast<char*>(dst) + off, src, n);
  });
}

void CheckpointReader::verify() const {
  for (const auto& e : entries_) read_section(e.name, nullptr);
}

}  // namespace siesta::train
