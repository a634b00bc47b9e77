#include "backup_store.hpp"

#include <stdexcept>

namespace siesta::allocator {

BackupStore::BackupStore(uint64_t granularity, AllocFn alloc, FreeFn free)
    : granularity_(granularity), alloc_(std::move(alloc)), release_(std::move(free)) {}

BackupStore::~BackupStore() {
  for (auto& [p, n] : segments_) release_(p, n);
}

void BackupStore::ensure_free(uint64_t bytes) {
  if (bytes <= free_total_) return;
  uint64_t n = round_up(bytes - free_total_, granularity_);
  char* p = alloc_(n);  // throws AllocatorError when the host has no memory for it
  segments_.emplace_back(p, n);
  segment_ends_.insert(p + n);
  give({{p, n}});
  capacity_ += n;
}

std::vector<BackupPiece> BackupStore::take(uint64_t bytes) {
  if (bytes > free_total_) throw std::logic_error("BackupStore::take without ensure_free");
  std::vector<BackupPiece> out;
  while (bytes > 0) {
    auto it = free_.begin();
    uint64_t n = std::min(bytes, it->second);
    out.push_back({it->first, n});
    if (n < it->second) free_.emplace(it->first + n, it->second - n);
    free_.erase(it);
    free_total_ -= n;
    bytes -= n;
  }
  return out;
}

void BackupStore::give(const std::vector<BackupPiece>& pieces) {
  for (auto& piece : pieces) {
    char* start = piece.host;
    uint64_t n = piece.bytes;
    free_total_ += n;
    auto next = free_.lower_bound(start);
    // Merge with the following free range unless a segment ends between them.
    if (next != free_.end() && next->first == start + n && !segment_ends_.count(start + n)) {
      n += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == start && !segment_ends_.count(start)) {
        prev->second += n;
        continue;
      }
    }
    free_.emplace(start, n);
  }
}

}  // namespace siesta::allocator
