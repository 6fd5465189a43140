#include "tokenizer/jinja/text.h"

#include <locale.h>

#include <clocale>
#include <cwctype>

namespace dsv3::jinja {

std::vector<char32_t> decode_utf8(std::string_view text) {
  std::vector<char32_t> code_points;
  code_points.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int length = lead < 0x80           ? 1
                 : (lead >> 5) == 0x6  ? 2
                 : (lead >> 4) == 0xE  ? 3
                 : (lead >> 3) == 0x1E ? 4
                                       : 0;
    if (length == 0 || i + length > text.size()) {
      code_points.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t code_point = length == 1 ? lead : lead & (0x7F >> length);
    bool valid = true;
    for (int k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) valid = false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (!valid) {
      code_points.push_back(0xFFFD);
      ++i;
      continue;
    }
    code_points.push_back(code_point);
    i += length;
  }
  return code_points;
}

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::string encode_utf8(const std::vector<char32_t>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t code_point : code_points) append_utf8(out, code_point);
  return out;
}

size_t count_code_points(std::string_view text) {
  size_t count = 0;
  for (char c : text) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

namespace {

template <typename Predicate>
std::string strip_if(std::string_view text, bool left, bool right, Predicate should_strip) {
  const std::vector<char32_t> code_points = decode_utf8(text);
  size_t begin = 0;
  size_t end = code_points.size();
  if (left)
    while (begin < end && should_strip(code_points[begin])) ++begin;
  if (right)
    while (end > begin && should_strip(code_points[end - 1])) --end;
  return encode_utf8(std::vector<char32_t>(code_points.begin() + begin, code_points.begin() + end));
}

locale_t utf8_locale() {
  static const locale_t locale = [] {
    locale_t loaded = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
    return loaded;
  }();
  return locale;
}

}  // namespace

std::string strip_python(std::string_view text, bool left, bool right) {
  return strip_if(text, left, right, is_python_space);
}

std::string strip_chars(std::string_view text, std::string_view chars, bool left, bool right) {
  const std::vector<char32_t> strip_set = decode_utf8(chars);
  return strip_if(text, left, right, [&](char32_t c) {
    for (char32_t candidate : strip_set)
      if (candidate == c) return true;
    return false;
  });
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  const locale_t locale = utf8_locale();
  return locale ? static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), locale)) : c;
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const locale_t locale = utf8_locale();
  return locale ? static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), locale)) : c;
}

std::string upper(std::string_view text) {
  std::string out;
  for (char32_t c : decode_utf8(text)) append_utf8(out, to_upper(c));
  return out;
}

std::string lower(std::string_view text) {
  std::string out;
  for (char32_t c : decode_utf8(text)) append_utf8(out, to_lower(c));
  return out;
}

std::string python_repr(std::string_view text) {
  const bool use_double =
      text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos;
  const char quote = use_double ? '"' : '\'';
  std::string out(1, quote);
  static const char* hex = "0123456789abcdef";
  for (char32_t c : decode_utf8(text)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      append_utf8(out, c);
    }
  }
  out += quote;
  return out;
}

}  // namespace dsv3::jinja
