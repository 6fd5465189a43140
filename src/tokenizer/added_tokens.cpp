#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// The single_word test of `tokenizers`: a token only counts when not glued to a word
// character on either side (Unicode \w).
const Regex& word_character() {
  static const Regex regex(R"(\A\w)", "added token single_word check");
  return regex;
}

size_t previous_char_start(std::string_view text, size_t pos) {
  while (pos > 0 && (static_cast<unsigned char>(text[pos - 1]) & 0xC0) == 0x80) --pos;
  return pos > 0 ? pos - 1 : 0;
}

bool ends_with_word(std::string_view text, size_t begin, size_t pos) {
  if (pos <= begin) return false;
  const size_t last = previous_char_start(text, pos);
  return word_character().matches_at_start(text.substr(last, pos - last));
}

bool starts_with_word(std::string_view text, size_t pos, size_t end) {
  if (pos >= end) return false;
  const size_t length = utf8::sequence_length(static_cast<unsigned char>(text[pos]));
  return word_character().matches_at_start(text.substr(pos, length));
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens,
                              const std::vector<std::string>& patterns) {
  tokens_ = tokens;
  nodes_.assign(1, TrieNode{});
  std::fill(std::begin(starts_token_), std::end(starts_token_), false);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& pattern = patterns[i];
    if (pattern.empty()) continue;
    starts_token_[static_cast<unsigned char>(pattern[0])] = true;
    int32_t node = 0;
    for (char c : pattern) {
      const auto byte = static_cast<unsigned char>(c);
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(byte, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    // With duplicate patterns the first token wins, as in the automaton's pattern order.
    if (nodes_[node].token_index < 0) nodes_[node].token_index = static_cast<int32_t>(i);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char byte) const {
  for (const auto& [edge, next] : nodes_[node].children)
    if (edge == byte) return next;
  return -1;
}

int32_t AddedTokenMatcher::longest_match_at(std::string_view text, size_t pos, size_t end,
                                            size_t& length) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < end; ++i) {
    node = child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token_index >= 0) {
      best = nodes_[node].token_index;
      length = i + 1 - pos;
    }
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, size_t begin, size_t end,
                              std::vector<TextSegment>& out) const {
  size_t plain_begin = begin;  // start of the text not yet emitted
  size_t pos = begin;
  while (pos < end) {
    if (!starts_token_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t length = 0;
    const int32_t index = longest_match_at(text, pos, end, length);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t match_begin = pos, match_end = pos + length;
    pos = match_end;  // the automaton resumes after the match, whatever the flags decide
    if (token.single_word &&
        (ends_with_word(text, begin, match_begin) || starts_with_word(text, match_end, end)))
      continue;
    if (match_begin < plain_begin) continue;  // overlaps a previous token's rstrip
    if (token.lstrip) {
      size_t stripped = match_begin;
      while (stripped > plain_begin) {
        const size_t char_start = previous_char_start(text, stripped);
        if (!utf8::is_white_space(utf8::decode_at(text, char_start))) break;
        stripped = char_start;
      }
      match_begin = stripped;
    }
    if (token.rstrip) {
      while (match_end < end) {
        const size_t char_length =
            utf8::sequence_length(static_cast<unsigned char>(text[match_end]));
        if (!utf8::is_white_space(utf8::decode_at(text, match_end))) break;
        match_end += char_length;
      }
    }
    if (plain_begin < match_begin) out.push_back({plain_begin, match_begin, -1});
    out.push_back({match_begin, match_end, token.id});
    plain_begin = match_end;
  }
  if (plain_begin < end) out.push_back({plain_begin, end, -1});
}

}  // namespace dsv3
