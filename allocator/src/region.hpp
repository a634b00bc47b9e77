// What the pool knows about one allocation: its reserved address range, the chunks of
// physical memory behind it, and where its content sits in the host backup while asleep.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "siesta/allocator/tag.hpp"

namespace siesta::allocator {

struct Chunk {
  uint64_t offset = 0, bytes = 0;  // within the region; bytes is a multiple of the granularity
  uint64_t handle = 0;             // backend's handle of the physical memory (CUDA VMM)
  bool mapped = false;
};

// A contiguous piece of the host backup pool.
struct BackupPiece {
  char* host = nullptr;
  uint64_t bytes = 0;
};

struct Region {
  void* ptr = nullptr;
  uint64_t bytes = 0;           // requested
  uint64_t reserved_bytes = 0;  // rounded up to the granularity
  Tag tag;
  std::string name;
  std::vector<Chunk> chunks;
  std::vector<BackupPiece> backup;  // non-empty while asleep after an offload

  uint64_t mapped_bytes() const {
    uint64_t n = 0;
    for (auto& c : chunks) n += c.mapped ? c.bytes : 0;
    return n;
  }
  uint64_t backed_up_bytes() const {
    uint64_t n = 0;
    for (auto& p : backup) n += p.bytes;
    return n;
  }
};

// Calls fn(host, offset, n) for each piece of [offset, offset+len) of a region's content,
// where backup holds the content laid out in order across its pieces.
template <class Fn>
void for_each_backup_span(const std::vector<BackupPiece>& backup, uint64_t offset, uint64_t len,
                          Fn&& fn) {
  uint64_t piece_start = 0;
  for (auto& p : backup) {
    uint64_t piece_end = piece_start + p.bytes;
    uint64_t lo = offset > piece_start ? offset : piece_start;
    uint64_t hi = offset + len < piece_end ? offset + len : piece_end;
    if (lo < hi) fn(p.host + (lo - piece_start), lo, hi - lo);
    if (piece_end >= offset + len) break;
    piece_start = piece_end;
  }
}

inline uint64_t round_up(uint64_t n, uint64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

}  // namespace siesta::allocator
