// The memory manager's bookkeeping, free of CAF so replay can re-drive it: a device budget,
// who holds how many bytes under which tag, and a timeline of every transition.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace siesta::actors {

class BudgetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MemorySample {
  int64_t t_ns = 0;
  std::string event;        // "reserve trainer/train_params", "release engine/kv_cache", ...
  uint64_t held_bytes = 0;  // sum of everything held after the event
  uint64_t device_used_bytes = 0;  // as measured by the caller (0 on CPU runs)
};

class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  uint64_t capacity() const { return capacity_; }
  uint64_t held() const;
  uint64_t free() const { return capacity_ - std::min(capacity_, held()); }
  uint64_t held_by(const std::string& owner, const std::string& tag) const;

  // Grants bytes to (owner, tag), or throws BudgetError naming requested, free and each holder.
  void reserve(const std::string& owner, const std::string& tag, uint64_t bytes, int64_t t_ns = 0,
               uint64_t device_used = 0);
  // Releases what (owner, tag) holds (all of it when bytes is nullopt).
  void release(const std::string& owner, const std::string& tag,
               std::optional<uint64_t> bytes = std::nullopt, int64_t t_ns = 0,
               uint64_t device_used = 0);

  const std::vector<MemorySample>& timeline() const { return timeline_; }
  uint64_t peak_held() const { return peak_; }
  // "engine/weights 1.00 GiB, trainer/optimizer 2.00 GiB"
  std::string holders() const;

 private:
  uint64_t capacity_;
  std::map<std::pair<std::string, std::string>, uint64_t> held_;
  std::vector<MemorySample> timeline_;
  uint64_t peak_ = 0;
  void record(int64_t t_ns, std::string event, uint64_t device_used);
};

std::string format_bytes(uint64_t bytes);  // "1.50 GiB"

}  // namespace siesta::actors
