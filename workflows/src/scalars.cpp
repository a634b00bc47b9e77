// Strict scalar parsing and round-trippable printing for workflow values.
#include "scalars.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace siesta::workflows::detail {

std::optional<int64_t> parse_int(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_real(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view s) {
  for (auto t : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
    if (s == t) return true;
  for (auto f : {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})
    if (s == f) return false;
  return std::nullopt;
}

std::optional<uint64_t> parse_bytes(std::string_view s) {
  struct Unit { std::string_view suffix; double scale; };
  static constexpr Unit units[] = {
      {"TiB", 1099511627776.0}, {"GiB", 1073741824.0}, {"MiB", 1048576.0}, {"KiB", 1024.0},
      {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1.0}};
  double scale = 1.0;
  for (const auto& u : units) {
    if (s.size() > u.suffix.size() && s.ends_with(u.suffix)) {
      scale = u.scale;
      s.remove_suffix(u.suffix.size());
      while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
      break;
    }
  }
  if (scale == 1.0) {
    auto i = parse_int(s);
    if (!i || *i < 0) return std::nullopt;
    return static_cast<uint64_t>(*i);
  }
  auto r = parse_real(s);
  if (!r || *r < 0 || *r * scale > 1.8e19) return std::nullopt;
  return static_cast<uint64_t>(std::llround(*r * scale));
}

std::string format_real(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::string(buf, p);
}

std::string format_bytes(uint64_t v) {
  if (v == 0) return "0";
  if (v % (1ull << 30) == 0) return std::to_string(v >> 30) + "GiB";
  if (v % (1ull << 20) == 0) return std::to_string(v >> 20) + "MiB";
  if (v % (1ull << 10) == 0) return std::to_string(v >> 10) + "KiB";
  return std::to_string(v);
}

std::string human_bytes(double v) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  if (u == 0) std::snprintf(buf, sizeof buf, "%.0f B", v);
  else std::snprintf(buf, sizeof buf, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
  return buf;
}

}  // namespace siesta::workflows::detail
