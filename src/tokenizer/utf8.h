// UTF-8 helpers the tokenizer needs: strict validation of input text, and the lossy decoding
// Rust's `String::from_utf8_lossy` does (which Hugging Face's ByteLevel decoder uses), so that
// invalid byte runs turn into U+FFFD exactly as `tokenizers` turns them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::utf8 {

// Length of the code point starting with `lead` (1..4), assuming valid UTF-8.
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at text[pos] (text must be valid UTF-8).
char32_t decode_at(std::string_view text, size_t pos);
void append_code_point(std::string& out, char32_t code_point);

// Byte offset of the first invalid sequence, or npos when `text` is valid UTF-8.
size_t find_invalid(std::string_view text);
inline bool is_valid(std::string_view text) { return find_invalid(text) == std::string_view::npos; }

// Appends `bytes` decoded as from_utf8_lossy does: each maximal invalid subpart (a lone bad
// byte, or the valid-so-far prefix of a broken sequence) becomes one U+FFFD.
// When `hold_incomplete_tail` is set and `bytes` ends inside a sequence that could still
// be completed, those tail bytes are not decoded; the return value is the number of bytes
// consumed (== bytes.size() unless a tail was held back).
size_t append_lossy(std::string& out, std::string_view bytes, bool hold_incomplete_tail = false);

inline std::string decode_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  append_lossy(out, bytes);
  return out;
}

// Unicode White_Space property (what Rust's char::is_whitespace tests).
bool is_white_space(char32_t code_point);

}  // namespace dsv3::utf8
