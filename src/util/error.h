// The one error type of the engine. Thrown where bad input is detected, with a message that
// names the file, field or position; caught in tools/ and turned into a one-line message.
#pragma once

#include <stdexcept>
#include <string>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace dsv3
