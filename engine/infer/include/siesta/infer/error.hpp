// The inference layer's one error type. A kind tells callers (the HTTP server) how to answer:
// InvalidArgument -> 400, Sleeping / WeightsNotLoaded -> 503, the rest -> 500.
#pragma once

#include <stdexcept>
#include <string>

namespace siesta::infer {

enum class ErrorKind {
  InvalidArgument,   // a request or option outside what is allowed (the message names both)
  Sleeping,          // the engine is asleep (or going to sleep) and refuses new work
  WeightsNotLoaded,  // weights woken after sleep(level=2) and not reloaded yet
  OutOfMemory,       // a wake or an allocation did not fit; the engine stays asleep
  NotFound,          // an unknown request id
  Internal,
};

const char* error_kind_name(ErrorKind k);

class InferError : public std::runtime_error {
 public:
  InferError(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace siesta::infer
