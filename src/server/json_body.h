// The JSON body of a request, parsed with limits against hostile input: nlohmann's parser has
// no nesting limit of its own (and printing or copying a 100000-deep value recurses), so the
// depth is checked while parsing. Invalid UTF-8 inside strings is rejected by the parser.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace dsv3::server {

// The largest nesting of arrays and objects accepted (OpenAI requests need a handful; tool
// parameter schemas a few more).
inline constexpr int kMaxJsonDepth = 64;

// Throws RequestError (400) on malformed JSON, invalid UTF-8, nesting deeper than `max_depth`
// or a body that is not a JSON object.
nlohmann::ordered_json parse_json_body(std::string_view body, int max_depth = kMaxJsonDepth);

}  // namespace dsv3::server
