#include "number_lists.h"

#include <charconv>
#include <cstdint>
#include <cstdlib>

#include "util/error.h"

namespace dsv3::cli {

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

int64_t parse_int(const std::string& item, const std::string& flag) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
  if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
    throw Error(flag + ": \"" + item + "\" is not an integer (expected e.g. " + flag + " 0,5,17)");
  return value;
}

}  // namespace

std::vector<std::vector<int64_t>> parse_int_rows(const std::string& text, const std::string& flag) {
  std::vector<std::vector<int64_t>> rows;
  for (const std::string& row : split(text, ';')) {
    rows.emplace_back();
    for (const std::string& item : split(row, ',')) rows.back().push_back(parse_int(item, flag));
  }
  return rows;
}

std::vector<std::vector<int32_t>> parse_int32_rows(const std::string& text,
                                                   const std::string& flag) {
  std::vector<std::vector<int32_t>> rows;
  for (const auto& row : parse_int_rows(text, flag)) {
    rows.emplace_back();
    for (int64_t value : row) {
      if (value < INT32_MIN || value > INT32_MAX)
        throw Error(flag + ": " + std::to_string(value) + " is out of range");
      rows.back().push_back(int32_t(value));
    }
  }
  return rows;
}

std::vector<std::vector<int32_t>> parse_id_rows(const std::string& text, const std::string& flag) {
  std::vector<std::vector<int32_t>> rows;
  for (const auto& row : parse_int_rows(text, flag)) {
    rows.emplace_back();
    for (int64_t id : row) {
      if (id < 0 || id > INT32_MAX)
        throw Error(flag + ": \"" + std::to_string(id) + "\" is not a token id (expected e.g. " +
                    flag + " 0,5,17)");
      rows.back().push_back(int32_t(id));
    }
  }
  return rows;
}

std::vector<int32_t> parse_id_row(const std::string& text, const std::string& flag) {
  if (text.find(';') != std::string::npos) throw Error(flag + ": one row of ids expected (no ';')");
  return parse_id_rows(text, flag)[0];
}

std::vector<int32_t> parse_id_list(const std::string& text) { return parse_id_row(text, "--ids"); }

std::vector<std::vector<double>> parse_float_rows(const std::string& text,
                                                  const std::string& flag) {
  std::vector<std::vector<double>> rows;
  for (const std::string& row : split(text, ';')) {
    rows.emplace_back();
    for (const std::string& item : split(row, ',')) {
      char* end = nullptr;
      const double value = std::strtod(item.c_str(), &end);
      if (item.empty() || end != item.c_str() + item.size())
        throw Error(flag + ": \"" + item + "\" is not a number");
      rows.back().push_back(value);
    }
  }
  return rows;
}

}  // namespace dsv3::cli
