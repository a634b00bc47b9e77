// The train layer's one error type: messages say what was asked, what was found, what is allowed.
#pragma once

#include <stdexcept>

namespace siesta::train {

class TrainError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace siesta::train
