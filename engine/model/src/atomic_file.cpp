#include "siesta/model/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "siesta/model/config.hpp"  // ModelError

namespace siesta::model {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& p) {
  throw ModelError(what + " '" + p.string() + "' failed: " + std::strerror(errno));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void write_all_at(int fd, const void* data, size_t n, uint64_t offset, const fs::path& file) {
  const char* c = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, c, n, off_t(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("writing", file);
    }
    c += w;
    n -= size_t(w);
    offset += uint64_t(w);
  }
}

void replace_file_atomically(const fs::path& path,
                             const std::function<void(int, const fs::path&)>& fill) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  // Hidden and per process, so two writers of one path never share a temporary.
  const fs::path tmp =
      dir / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()));
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) fail("creating temporary file", tmp);
  try {
    fill(f.fd, tmp);
    if (::fsync(f.fd) != 0) fail("fsync of", tmp);
    const int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) fail("closing", tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming '" + tmp.string() + "' to", path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd < 0) fail("opening folder", dir);
  if (::fsync(d.fd) != 0) fail("fsync of folder", dir);
}

void replace_file_atomically(const fs::path& path, std::string_view bytes) {
  replace_file_atomically(path, [&](int fd, const fs::path& tmp) {
    write_all_at(fd, bytes.data(), bytes.size(), 0, tmp);
  });
}

}  // namespace siesta::model
