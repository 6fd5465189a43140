#include "generate/text_stream.h"

#include <algorithm>

#include "util/error.h"

namespace dsv3 {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer), decoder_(tokenizer), stop_strings_(std::move(stop_strings)) {
  std::erase_if(stop_strings_, [](const std::string& stop) { return stop.empty(); });
}

std::string TextStream::push(int32_t id) {
  if (stopped_ || id < 0 || id >= tokenizer_.vocab_size()) return "";
  try {
    held_ += decoder_.push(id);
  } catch (const Error&) {  // an id in a gap of the vocabulary
    return "";
  }
  return release(false);
}

std::string TextStream::finish() {
  if (!stopped_) held_ += decoder_.finish();
  return release(true);
}

std::string TextStream::release(bool final) {
  if (stopped_) return "";
  // A complete stop string: everything before its first occurrence, then stop.
  size_t first_stop = std::string::npos;
  for (const auto& stop : stop_strings_) first_stop = std::min(first_stop, held_.find(stop));
  if (first_stop != std::string::npos) {
    std::string out = held_.substr(0, first_stop);
    held_.clear();
    stopped_ = true;
    emitted_ += out;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  if (!final) {
    for (const auto& stop : stop_strings_)
      for (size_t length = std::min(stop.size() - 1, held_.size()); length > keep; --length)
        if (held_.compare(held_.size() - length, length, stop, 0, length) == 0) {
          keep = length;
          break;
        }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  emitted_ += out;
  return out;
}

}  // namespace dsv3
