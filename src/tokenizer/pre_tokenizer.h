// The "pre_tokenizer" of tokenizer.json: cuts plain text into words before BPE. Supported:
// Sequence (steps applied one after another, each to the pieces the previous one left),
// Split (Regex or String pattern; behaviours Removed, Isolated, MergedWithPrevious,
// MergedWithNext, Contiguous; invert) and ByteLevel (add_prefix_space, use_regex).
#pragma once

#include <deque>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

// Owns text created during pre-tokenization (prefixed or byte-mapped pieces); pieces are
// views into it or into the input, so references must stay put: hence a deque.
using TextArena = std::deque<std::string>;

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Replaces `pieces` by their sub-pieces (non-empty, in order); `scratch` is spare storage.
  virtual void apply(std::vector<std::string_view>& pieces, std::vector<std::string_view>& scratch,
                     TextArena& arena) const = 0;
};

class PreTokenizer {
 public:
  // `config` is the "pre_tokenizer" object (may be null); `where` names it in errors.
  PreTokenizer(const nlohmann::json& config, const std::string& where);
  ~PreTokenizer();

  // Splits `text` into words, appended to `words`.
  void split(std::string_view text, std::vector<std::string_view>& words, TextArena& arena) const;

  // True when the final step is ByteLevel: its byte -> character mapping is then left to the
  // model, which looks words up by their raw bytes (same result, no copy per word).
  bool words_need_byte_mapping() const { return byte_level_last_; }

 private:
  void add_steps(const nlohmann::json& config, const std::string& where);

  std::vector<std::unique_ptr<PreTokenizerStep>> steps_;
  bool byte_level_last_ = false;
};

}  // namespace dsv3
