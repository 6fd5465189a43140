#include "server/json_body.h"

#include "server/request_error.h"

namespace dsv3::server {

nlohmann::ordered_json parse_json_body(std::string_view body, int max_depth) {
  using Json = nlohmann::ordered_json;
  // The callback sees each value as it is parsed, with its depth; throwing stops the parser
  // before a deep value exists.
  const Json::parser_callback_t limit_depth = [max_depth](int depth, Json::parse_event_t, Json&) {
    if (depth > max_depth)
      throw bad_request("the JSON body is nested deeper than " + std::to_string(max_depth) +
                        " levels");
    return true;
  };
  Json parsed;
  try {
    parsed = Json::parse(body.begin(), body.end(), limit_depth);
  } catch (const Json::parse_error& error) {
    // nlohmann's message quotes the bytes it stopped at; only the position is kept, since
    // those bytes may be invalid UTF-8.
    throw bad_request("the request body is not valid JSON (UTF-8): error at byte " +
                      std::to_string(error.byte));
  }
  if (!parsed.is_object()) throw bad_request("the request body must be a JSON object");
  return parsed;
}

}  // namespace dsv3::server
