// Replacing a file so that a crash leaves the old content or the new, never a torn file: the
// content goes to a temporary file in the same folder, which is fsync'ed, renamed over the
// target, and then the folder is fsync'ed (a rename is durable only once the folder's entry
// is). Used for model folders (safetensors, config.json, the shard index), trainer checkpoints
// and run-folder state files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>

namespace siesta::model {

// fill(fd, tmp) writes the whole content through the temporary's POSIX file descriptor (it may
// write in any order, e.g. pwrite a header last). Throws ModelError naming the file and the
// failing system call; whatever fill throws passes through unchanged. Either way the
// temporary is removed and `path` keeps its old content.
void replace_file_atomically(
    const std::filesystem::path& path,
    const std::function<void(int fd, const std::filesystem::path& tmp)>& fill);
void replace_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// pwrite of all n bytes at offset (retrying short writes and EINTR); throws ModelError naming
// `file` (the path fd was opened for) when the system refuses.
void write_all_at(int fd, const void* data, size_t n, uint64_t offset,
                  const std::filesystem::path& file);

}  // namespace siesta::model
