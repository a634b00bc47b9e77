#include "siesta/allocator/tag.hpp"

#include "siesta/allocator/error.hpp"

namespace siesta::allocator {

void validate_tag(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  if (!ok) {
    std::string builtin;
    for (auto& t : builtin_tags()) builtin += (builtin.empty() ? "" : ", ") + t;
    throw AllocatorError("invalid memory tag '" + std::string(name) +
                         "': a tag is 1-64 characters of [a-z0-9_] (built-in: " + builtin + ")");
  }
}

}  // namespace siesta::allocator
