// UTF-8 string helpers with Python str semantics (code points, Unicode whitespace, case),
// shared by the lexer, filters and string methods of the Jinja interpreter.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::jinja {

// Decodes UTF-8 into code points; an invalid byte becomes U+FFFD (template text and JSON input
// are valid UTF-8 in practice, this only keeps hostile input from crashing).
std::vector<char32_t> decode_utf8(std::string_view text);
void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(const std::vector<char32_t>& code_points);
size_t count_code_points(std::string_view text);

// Python's str.isspace() set: what str.strip()/split() with no argument remove.
bool is_python_space(char32_t code_point);
std::string strip_python(std::string_view text, bool left, bool right);
// str.strip(chars): removes any of the code points in `chars` from the ends.
std::string strip_chars(std::string_view text, std::string_view chars, bool left, bool right);

// Simple (one to one) Unicode case mapping from the C library's C.UTF-8 locale, as Python's
// str.upper()/lower() do except for the rare one-to-many mappings (e.g. German sharp s).
char32_t to_upper(char32_t code_point);
char32_t to_lower(char32_t code_point);
std::string upper(std::string_view text);
std::string lower(std::string_view text);

// Python's repr() of a str: single quotes unless the text holds ' and no ".
std::string python_repr(std::string_view text);

}  // namespace dsv3::jinja
