// Turns generated ids into text pieces for streaming: complete UTF-8 characters only, and
// text that might be the start of a stop string held back until it is known not to be one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dsv3 {

class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Text that can be shown after `id`. Once a stop string appears, stopped() is true and the
  // text before it is all that is ever returned. Ids the tokenizer does not know (a model's
  // vocabulary may be padded past the tokenizer's) give no text.
  std::string push(int32_t id);
  // The held-back rest at the end of generation.
  std::string finish();
  bool stopped() const { return stopped_; }
  // Everything returned so far.
  const std::string& text() const { return emitted_; }

 private:
  std::string release(bool final);

  const Tokenizer& tokenizer_;
  StreamingDecoder decoder_;
  std::vector<std::string> stop_strings_;
  std::string held_;     // decoded, not yet returned
  std::string emitted_;  // returned so far
  bool stopped_ = false;
};

}  // namespace dsv3
