// A client's mistake in an API request, carrying what the OpenAI error JSON needs: the HTTP
// status, the error type, the offending parameter and a machine-readable code.
#pragma once

#include <string>

#include "util/error.h"

namespace dsv3::server {

class RequestError : public Error {
 public:
  RequestError(int status, const std::string& message, std::string param = "",
               std::string code = "", std::string type = "invalid_request_error")
      : Error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)),
        type_(std::move(type)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }  // "" when no single field is at fault
  const std::string& code() const { return code_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string param_;
  std::string code_;
  std::string type_;
};

// A request the client sent wrongly (400), naming the field at fault.
inline RequestError bad_request(const std::string& message, const std::string& param = "") {
  return RequestError(400, message, param);
}

}  // namespace dsv3::server
