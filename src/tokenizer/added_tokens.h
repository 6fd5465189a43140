// Added tokens ("added_tokens" of tokenizer.json): strings such as "<｜User｜>" that are cut out
// of the text before any pre-tokenization and map straight to one id. Matching is
// leftmost-longest, as the Aho-Corasick automaton in Hugging Face `tokenizers` does, and
// honours each token's lstrip / rstrip / single_word flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;  // matched against normalized text rather than the raw input
};

// A piece of text: either plain text still to be tokenized (token_id < 0), or an added token.
struct TextSegment {
  size_t begin = 0, end = 0;
  int32_t token_id = -1;
};

// Finds one set of added tokens in text (the raw set, or the normalized set).
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is the string to look for (the token content, normalized if needed).
  void build(const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns);
  bool empty() const { return tokens_.empty(); }

  // Appends to `out` the segments of text[begin, end): plain runs and matched tokens, in order,
  // with offsets relative to `text`. Empty plain runs are left out.
  void split(std::string_view text, size_t begin, size_t end, std::vector<TextSegment>& out) const;

 private:
  struct TrieNode {
    std::vector<std::pair<unsigned char, int32_t>> children;  // byte -> node index
    int32_t token_index = -1;                                 // token ending here
  };
  int32_t child(int32_t node, unsigned char byte) const;
  // Longest token starting at text[pos] (within end), or -1; sets its byte length.
  int32_t longest_match_at(std::string_view text, size_t pos, size_t end, size_t& length) const;

  std::vector<AddedToken> tokens_;
  std::vector<TrieNode> nodes_;
  bool starts_token_[256] = {};
};

}  // namespace dsv3
