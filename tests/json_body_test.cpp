// parse_json_body: the limits that nlohmann's parser does not have (nesting depth), invalid
// UTF-8 and non-object bodies, all as 400 RequestErrors.
#include "server/json_body.h"

#include <gtest/gtest.h>

#include "server/request_error.h"

namespace dsv3::server {
namespace {

int status_of(const std::string& body) {
  try {
    parse_json_body(body);
  } catch (const RequestError& error) {
    return error.status();
  }
  return 200;
}

TEST(JsonBody, ParsesObjectsKeepingKeyOrder) {
  const auto body = parse_json_body(R"({"b": 1, "a": [1, {"c": "é"}]})");
  EXPECT_EQ(body.begin().key(), "b");
  EXPECT_EQ(body["a"][1]["c"], "é");
}

TEST(JsonBody, RejectsMalformedInput) {
  EXPECT_EQ(status_of("{\"a\": "), 400);  // truncated
  EXPECT_EQ(status_of("[1, 2]"), 400);    // not an object
  EXPECT_EQ(status_of(""), 400);
  EXPECT_EQ(status_of("{\"a\": \"\xff\xfe\"}"), 400);      // invalid UTF-8 in a string
  EXPECT_EQ(status_of("{\"a\": \"\xed\xa0\x80\"}"), 400);  // an encoded surrogate
}

TEST(JsonBody, LimitsNesting) {
  auto nested = [](int depth) {
    return "{\"a\": " + std::string(size_t(depth), '[') + std::string(size_t(depth), ']') + "}";
  };
  EXPECT_EQ(status_of(nested(kMaxJsonDepth - 1)), 200);
  EXPECT_EQ(status_of(nested(kMaxJsonDepth + 1)), 400);
  EXPECT_EQ(status_of(nested(1000000)), 400);  // no stack overflow, no quadratic time
}

}  // namespace
}  // namespace dsv3::server
