#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace dsv3::byte_level {
namespace {

// bytes_to_unicode() from GPT-2's encoder.py: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100 onwards, in byte order.
struct ByteMap {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, 324> byte_of_code_point;  // code points used are all below 324

  ByteMap() {
    byte_of_code_point.fill(-1);
    auto is_printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next_extra = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t code_point = is_printable(b) ? char32_t(b) : char32_t(256 + next_extra++);
      utf8::append_code_point(char_of_byte[b], code_point);
      byte_of_code_point[code_point] = int16_t(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string_view char_of_byte(uint8_t byte) { return byte_map().char_of_byte[byte]; }

void append_chars(std::string& out, std::string_view bytes) {
  const ByteMap& map = byte_map();
  for (char byte : bytes) out += map.char_of_byte[static_cast<uint8_t>(byte)];
}

bool append_bytes(std::string& bytes, std::string_view token) {
  const ByteMap& map = byte_map();
  const size_t original_size = bytes.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const size_t length = utf8::sequence_length(static_cast<unsigned char>(token[pos]));
    if (pos + length > token.size()) break;
    const char32_t code_point = utf8::decode_at(token, pos);
    if (code_point >= map.byte_of_code_point.size() || map.byte_of_code_point[code_point] < 0)
      break;
    bytes += char(map.byte_of_code_point[code_point]);
    pos += length;
  }
  if (pos == token.size()) return true;
  bytes.resize(original_size);
  return false;
}

}  // namespace dsv3::byte_level
