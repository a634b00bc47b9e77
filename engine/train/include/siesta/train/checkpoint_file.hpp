// Checkpoint files: written atomically (temporary file in the same folder, fsync of the file,
// rename, fsync of the folder), so a crash leaves either the old checkpoint or the new one,
// never a torn one. A small index carries a magic, a version, the hash of the configuration
// that wrote it, the step, the RNG state and the data position, and a checksum per section;
// a corrupt, truncated or mismatched file is refused with an error saying which.
//
// Sections are streamed through callbacks in chunks, so device-resident state never needs a
// whole host copy. Integers are stored little-endian (the byte order of every target we build).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "siesta/train/rng.hpp"

namespace siesta::train {

// 2: the params and AdamW sections follow parameter_specs() with the q/k/v weights back to back
// and their biases after them (1: each weight followed by its bias). A reader refuses any other
// version, so a checkpoint is never read into a different layout.
constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointMeta {
  uint64_t config_hash = 0;     // what the reader must match (model shape, trainer layout)
  uint64_t step = 0;            // optimizer steps taken
  Rng::State rng{};             // the training loop's RNG
  uint64_t data_position = 0;   // next example index of the data stream
  std::string extra = {};       // free-form text (e.g. JSON) of the caller
};

// Streaming 64-bit checksum (four independent multiply-rotate lanes over 32-byte blocks,
// ~several GB/s): detects torn or bit-flipped data, not adversarial edits.
class Checksum {
 public:
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  uint64_t lanes_[4] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull,
                        0x27d4eb2f165667c5ull};
  unsigned char tail_[32];
  size_t tail_n_ = 0;
  uint64_t total_ = 0;
  void block(const unsigned char* p);
};

struct SectionSource {
  std::string name;
  uint64_t bytes = 0;
  // Fills dst with bytes [offset, offset + n) of the section.
  std::function<void(uint64_t offset, void* dst, size_t n)> read;
};

// Writes path atomically; throws TrainError naming the path and the failed system call.
void write_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                      const std::vector<SectionSource>& sections);

class CheckpointReader {
 public:
  // Opens and validates the preamble and the index (magic, version, sizes, index checksum).
  explicit CheckpointReader(const std::filesystem::path& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const CheckpointMeta& meta() const { return meta_; }
  // Throws TrainError when the file was written for another configuration.
  void expect_config_hash(uint64_t hash, const std::string& what) const;
  bool has_section(const std::string& name) const;
  uint64_t section_bytes(const std::string& name) const;   // throws when missing
  // Reads every section and checks its checksum; throws on the first mismatch.
  void verify() const;
  // Streams a section to sink in chunks; checks its checksum at the end (throws on mismatch,
  // after sink has seen the data: call verify() first to keep the destination intact).
  void read_section(const std::string& name,
                    const std::function<void(uint64_t offset, const void* src, size_t n)>& sink)
      const;
  void read_section(const std::string& name, void* dst, uint64_t bytes) const;

 private:
  struct Entry {
    std::string name;
    uint64_t offset = 0, bytes = 0, checksum = 0;
  };
  std::filesystem::path path_;
  int fd_ = -1;
  CheckpointMeta meta_;
  std::vector<Entry> entries_;
  const Entry& entry(const std::string& name) const;
};

}  // namespace siesta::train
