// Spelling of numbers and byte sizes in workflow YAML: strict parsing (no silent truncation)
// and printing that parses back to the same value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace siesta::workflows::detail {

std::optional<int64_t> parse_int(std::string_view s);
std::optional<double> parse_real(std::string_view s);  // finite values only
std::optional<bool> parse_bool(std::string_view s);    // true/false, yes/no, on/off
// "4096", "512MiB", "2GiB", "1.5GB"; binary (KiB..TiB) and decimal (KB..TB) units.
std::optional<uint64_t> parse_bytes(std::string_view s);

// Shortest text that parses back to exactly v.
std::string format_real(double v);
// "2GiB" when a whole number of GiB/MiB/KiB, else the plain integer (parses with parse_bytes).
std::string format_bytes(uint64_t v);
// For people: "1.50 GiB", "312.0 MiB", "96 B".
std::string human_bytes(double v);

}  // namespace siesta::workflows::detail
