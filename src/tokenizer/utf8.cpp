#include "tokenizer/utf8.h"

namespace dsv3::utf8 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The allowed range of the second byte given the lead byte (Unicode Table 3-7, "well-formed
// UTF-8 byte sequences"); later bytes are always 80..BF.
struct SecondByteRange {
  unsigned char low, high;
};
SecondByteRange second_byte_range(unsigned char lead) {
  if (lead == 0xE0) return {0xA0, 0xBF};
  if (lead == 0xED) return {0x80, 0x9F};  // excludes surrogates
  if (lead == 0xF0) return {0x90, 0xBF};
  if (lead == 0xF4) return {0x80, 0x8F};  // caps at U+10FFFF
  return {0x80, 0xBF};
}

// Length a lead byte announces, or 0 when it can never start a sequence.
size_t announced_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// How many bytes at text[pos] form a valid prefix of a sequence: returns the full length
// when the sequence is complete, and sets `complete` accordingly. A result of 1 with
// complete == false and a non-lead byte means "one bad byte".
size_t scan_sequence(std::string_view text, size_t pos, bool& complete, bool& truncated) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const size_t length = announced_length(lead);
  truncated = false;
  if (length == 0) {
    complete = false;
    return 1;
  }
  if (length == 1) {
    complete = true;
    return 1;
  }
  size_t used = 1;
  for (; used < length; ++used) {
    if (pos + used >= text.size()) {
      complete = false;
      truncated = true;
      return used;
    }
    const auto byte = static_cast<unsigned char>(text[pos + used]);
    const SecondByteRange range = used == 1 ? second_byte_range(lead) : SecondByteRange{0x80, 0xBF};
    if (byte < range.low || byte > range.high) {
      complete = false;
      return used;
    }
  }
  complete = true;
  return length;
}

}  // namespace

char32_t decode_at(std::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  auto cont = [&](size_t i) { return char32_t(static_cast<unsigned char>(text[pos + i]) & 0x3F); };
  switch (sequence_length(lead)) {
    case 1:
      return lead;
    case 2:
      return (char32_t(lead & 0x1F) << 6) | cont(1);
    case 3:
      return (char32_t(lead & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    default:
      return (char32_t(lead & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
  }
}

void append_code_point(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t find_invalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {  // ASCII fast path
      ++pos;
      continue;
    }
    bool complete = false, truncated = false;
    const size_t used = scan_sequence(text, pos, complete, truncated);
    if (!complete) return pos;
    pos += used;
  }
  return std::string_view::npos;
}

size_t append_lossy(std::string& out, std::string_view bytes, bool hold_incomplete_tail) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t ascii_end = pos;
    while (ascii_end < bytes.size() && static_cast<unsigned char>(bytes[ascii_end]) < 0x80)
      ++ascii_end;
    out.append(bytes.data() + pos, ascii_end - pos);
    pos = ascii_end;
    if (pos == bytes.size()) break;
    bool complete = false, truncated = false;
    const size_t used = scan_sequence(bytes, pos, complete, truncated);
    if (complete) {
      out.append(bytes.data() + pos, used);
    } else if (truncated && hold_incomplete_tail) {
      return pos;
    } else {
      out += kReplacement;
    }
    pos += used;
  }
  return bytes.size();
}

bool is_white_space(char32_t cp) {
  // Unicode 15 PropList.txt, White_Space.
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace dsv3::utf8
