// Memory tags: what an allocation is for, so that sleep/wake can act on a group of them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace siesta::allocator {

// A tag is a short name. The built-in ones are below; user-defined tags are any other
// non-empty name made of [a-z0-9_].
using Tag = std::string;

inline const std::vector<std::string>& builtin_tags() {
  static const std::vector<std::string> tags = {"weights",     "kv_cache",  "buffers",
                                                "train_params", "train_grads", "optimizer",
                                                "activations"};
  return tags;
}

// Throws AllocatorError naming the allowed form when name is not a valid tag.
void validate_tag(std::string_view name);

}  // namespace siesta::allocator
