// The comm layer's one error type: a lost peer, a timeout, a rejected manifest, a failed NCCL call.
#pragma once

#include <stdexcept>
#include <string>

namespace siesta::comm {

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace siesta::comm
