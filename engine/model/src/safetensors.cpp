// safetensors read (mmap + Boost.JSON header, fully validated) and write (temp file + rename).
#include "siesta/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>

#include "siesta/model/atomic_file.hpp"
#include "siesta/model/config.hpp"

namespace siesta::model {
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& p, const std::string& what) {
  throw ModelError("safetensors file '" + p.string() + "': " + what);
}

int64_t as_nonneg_int(const json::value& v, const fs::path& p, const std::string& tensor,
                      const char* field) {
  if (v.is_uint64()) return int64_t(v.as_uint64());
  if (v.is_int64() && v.as_int64() >= 0) return v.as_int64();
  fail(p, "tensor '" + tensor + "': " + field + " must hold non-negative integers (got " +
              json::serialize(v) + ")");
}

}  // namespace

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) munmap(map_, map_bytes_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, map_bytes_);
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, std::string("cannot stat (") + std::strerror(errno) + ")");
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, std::string("mmap failed (") + std::strerror(errno) + ")");
  f.map_ = m;
  f.map_bytes_ = size;
  const auto* bytes = static_cast<const unsigned char*>(m);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the " +
                   std::to_string(size - 8) + " bytes that follow it");
  const size_t data_bytes = size - 8 - size_t(header_len);
  const unsigned char* data = bytes + 8 + header_len;

  boost::system::error_code ec;
  json::value hv = json::parse(
      std::string_view(reinterpret_cast<const char*>(bytes + 8), size_t(header_len)), ec);
  if (ec) fail(path, "header is not valid JSON (" + ec.message() + ")");
  if (!hv.is_object()) fail(path, "header is not a JSON object");

  struct Range { size_t begin, end; size_t index; };
  std::vector<Range> ranges;
  for (const auto& [key, val] : hv.as_object()) {
    const std::string name(key);
    if (name == "__metadata__") {
      if (!val.is_object()) fail(path, "__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : val.as_object()) {
        if (!mv.is_string()) fail(path, "__metadata__ value of '" + std::string(mk) + "' is not a string");
        f.metadata_[std::string(mk)] = std::string(mv.as_string());
      }
      continue;
    }
    if (!val.is_object()) fail(path, "tensor '" + name + "': entry is not an object");
    const auto& o = val.as_object();
    const json::value* dt = o.if_contains("dtype");
    const json::value* sh = o.if_contains("shape");
    const json::value* off = o.if_contains("data_offsets");
    if (!dt || !dt->is_string() || !sh || !sh->is_array() || !off || !off->is_array() ||
        off->as_array().size() != 2)
      fail(path, "tensor '" + name + "': needs dtype (string), shape (array) and data_offsets "
                 "([begin, end])");
    SafetensorsEntry e;
    e.name = name;
    try {
      e.dtype = dtype_from_name(std::string(dt->as_string()));
    } catch (const std::invalid_argument& err) {
      fail(path, "tensor '" + name + "': " + err.what());
    }
    for (const auto& d : sh->as_array()) e.shape.push_back(as_nonneg_int(d, path, name, "shape"));
    const size_t begin = size_t(as_nonneg_int(off->as_array()[0], path, name, "data_offsets"));
    const size_t end = size_t(as_nonneg_int(off->as_array()[1], path, name, "data_offsets"));
    if (begin > end || end > data_bytes)
      fail(path, "tensor '" + name + "': data_offsets [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "] out of range (the data section holds " +
                     std::to_string(data_bytes) + " bytes)");
    const size_t want = size_t(numel(e.shape)) * dtype_size(e.dtype);
    if (end - begin != want)
      fail(path, "tensor '" + name + "': " + std::string(dtype_name(e.dtype)) + " " +
                     shape_str(e.shape) + " needs " + std::to_string(want) +
                     " bytes but data_offsets span " + std::to_string(end - begin));
    e.data = data + begin;
    e.bytes = want;
    ranges.push_back({begin, end, f.tensors_.size()});
    f.tensors_.push_back(std::move(e));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail(path, "tensor '" + f.tensors_[ranges[i].index].name + "' overlaps tensor '" +
                     f.tensors_[ranges[i - 1].index].name + "' in the data section");
  return f;
}

void write_safetensors(const fs::path& path,
                       const std::vector<std::pair<std::string, TensorView>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json::object header;
  if (!metadata.empty()) {
    json::object m;
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (header.contains(name)) throw ModelError("write_safetensors: tensor '" + name + "' given twice");
    json::array shape;
    for (int64_t d : t.shape) shape.push_back(d);
    header[name] = json::object{{"dtype", std::string(dtype_name(t.dtype))},
                                {"shape", std::move(shape)},
                                {"data_offsets", json::array{offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string h = json::serialize(header);
  h.append((8 - h.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  replace_file_atomically(path, [&](int fd, const fs::path& tmp) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((uint64_t(h.size()) >> (8 * i)) & 0xff);
    uint64_t at = 0;
    auto put = [&](const void* p, size_t n) {
      write_all_at(fd, p, n, at, tmp);
      at += n;
    };
    put(len, 8);
    put(h.data(), h.size());
    for (const auto& [name, t] : tensors) put(t.data, t.bytes());
  });
}

}  // namespace siesta::model
