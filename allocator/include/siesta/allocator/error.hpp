// The allocator layer's one error type.
#pragma once

#include <stdexcept>

namespace siesta::allocator {

class AllocatorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace siesta::allocator
