// An HTTP error answer in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <stdexcept>
#include <string>

namespace siesta::serve {

struct ApiError : std::runtime_error {
  int status;
  std::string type;    // BadRequestError, NotFoundError, ServiceUnavailableError, ...
  std::string param;   // the request field at fault, when there is one
  ApiError(int status_, std::string type_, const std::string& message, std::string param_ = "")
      : std::runtime_error(message), status(status_), type(std::move(type_)),
        param(std::move(param_)) {}
};

inline ApiError bad_request(const std::string& message, const std::string& param = "") {
  return ApiError(400, "BadRequestError", message, param);
}

std::string error_body(const ApiError& e);

}  // namespace siesta::serve
