// GPT-2's reversible byte <-> printable character map, used by the ByteLevel pre-tokenizer
// (bytes -> characters the vocabulary is written in) and the ByteLevel decoder (back).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::byte_level {

// UTF-8 spelling of the character byte `byte` maps to (e.g. ' ' -> "Ġ").
std::string_view char_of_byte(uint8_t byte);

// Appends the byte-level spelling of raw `bytes`.
void append_chars(std::string& out, std::string_view bytes);

// Converts a token written in byte-level characters back to raw bytes, appending them to
// `bytes`. Returns false (appending nothing) when some character is outside the map, as
// for added tokens such as "<｜User｜>", which the decoder then keeps verbatim.
bool append_bytes(std::string& bytes, std::string_view token);

// The GPT-2 byte-level pre-tokenization regex (used when ByteLevel.use_regex is true).
extern const char* const kGpt2Pattern;

}  // namespace dsv3::byte_level
