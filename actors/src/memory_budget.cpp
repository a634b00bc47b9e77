#include "siesta/actors/memory_budget.hpp"

#include <cstdio>

namespace siesta::actors {

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / double(1ull << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", double(b) / 1024.0);
  return buf;
}

uint64_t MemoryBudget::held() const {
  uint64_t s = 0;
  for (auto& [k, v] : held_) s += v;
  return s;
}

uint64_t MemoryBudget::held_by(const std::string& owner, const std::string& tag) const {
  auto it = held_.find({owner, tag});
  return it == held_.end() ? 0 : it->second;
}

std::string MemoryBudget::holders() const {
  std::string r;
  for (auto& [k, v] : held_) {
    if (v == 0) continue;
    r += (r.empty() ? "" : ", ") + k.first + "/" + k.second + " " + format_bytes(v);
  }
  return r.empty() ? "nothing held" : r;
}

void MemoryBudget::reserve(const std::string& owner, const std::string& tag, uint64_t bytes,
                           int64_t t_ns, uint64_t device_used) {
  if (bytes > free())
    throw BudgetError(owner + " asks for " + format_bytes(bytes) + " for " + tag + ", but only " +
                      format_bytes(free()) + " of " + format_bytes(capacity_) +
                      " is free (held: " + holders() + ")");
  held_[{owner, tag}] += bytes;
  record(t_ns, "reserve " + owner + "/" + tag, device_used);
}

void MemoryBudget::release(const std::string& owner, const std::string& tag,
                           std::optional<uint64_t> bytes, int64_t t_ns, uint64_t device_used) {
  auto it = held_.find({owner, tag});
  uint64_t have = it == held_.end() ? 0 : it->second;
  uint64_t n = bytes.value_or(have);
  if (n > have)
    throw BudgetError(owner + " releases " + format_bytes(n) + " of " + tag + " but holds only " +
                      format_bytes(have));
  if (it != held_.end()) it->second -= n;
  record(t_ns, "release " + owner + "/" + tag, device_used);
}

void MemoryBudget::record(int64_t t_ns, std::string event, uint64_t device_used) {
  uint64_t h = held();
  peak_ = std::max(peak_, h);
  timeline_.push_back({t_ns, std::move(event), h, device_used});
}

}  // namespace siesta::actors
