// The host backup pool: segments of (pinned, for CUDA) host memory allocated rarely and kept
// for the pool's life, handed out as pieces to regions that are asleep after an offload.
// Pinning is slow (cudaMallocHost of 8 GiB took ~6 s on an H100), so it never happens per
// sleep: the pool grows by exactly the deficit when a sleep needs more than is free, and
// pieces are reused by every later sleep.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "region.hpp"

namespace siesta::allocator {

class BackupStore {
 public:
  using AllocFn = std::function<char*(uint64_t)>;
  using FreeFn = std::function<void(char*, uint64_t)>;
  BackupStore(uint64_t granularity, AllocFn alloc, FreeFn free);
  ~BackupStore();
  BackupStore(const BackupStore&) = delete;
  BackupStore& operator=(const BackupStore&) = delete;

  // Makes sure at least `bytes` are free, adding one segment for the deficit if not.
  void ensure_free(uint64_t bytes);
  // Takes `bytes` (may span several pieces); ensure_free must have made room.
  std::vector<BackupPiece> take(uint64_t bytes);
  void give(const std::vector<BackupPiece>& pieces);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return capacity_ - free_total_; }
  int segments() const { return int(segments_.size()); }

 private:
  uint64_t granularity_;
  AllocFn alloc_;
  FreeFn release_;
  std::vector<std::pair<char*, uint64_t>> segments_;
  std::set<char*> segment_ends_;       // free ranges never coalesce across segments
  std::map<char*, uint64_t> free_;  // start -> bytes, in address order
  uint64_t capacity_ = 0, free_total_ = 0;
};

}  // namespace siesta::allocator
